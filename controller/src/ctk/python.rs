//! Python providers: `{type: python, module, func, arguments, secrets}` run by the host's Python through the
//! driver this binary ships, so installed extensions (chaostoolkit-toxiproxy, chaostoolkit-prometheus, ...)
//! work as they do under Chaos Toolkit.

use std::time::Duration;

use serde_json::{Map, Value};

use super::ActivityFailure;

/// One call of a python provider, its arguments already `${}`-substituted.
#[derive(Debug)]
pub struct PythonCall<'a> {
    pub module: &'a str,
    pub func: &'a str,
    pub arguments: Map<String, Value>,
    /// The resolved configuration: passed as `configuration=` when the function declares it. A function may
    /// change it (chaostoolkit-toxiproxy's `create_proxy` stores `<name>_PORT`): the changes are written back.
    pub configuration: &'a mut Map<String, Value>,
    /// The secrets of the scopes the provider names, merged: passed as `secrets=` when declared.
    pub secrets: Map<String, Value>,
    pub timeout: Option<Duration>,
}

/// The host's Python, driving calls for one run.
#[derive(Debug, Default)]
pub struct Python {}

impl Python {
    /// Runs one call: its return value, or the exception it raised.
    pub async fn call(&self, call: PythonCall<'_>) -> Result<Value, ActivityFailure> {
        Err(ActivityFailure::new(format!(
            "python provider {}.{}: the Python driver is not built into this binary yet",
            call.module, call.func
        )))
    }

    /// Checks at validation time that `module` imports and `func` binds `arguments` (Chaos Toolkit's
    /// validation does the same); the reason when it does not.
    pub async fn validate(
        &self,
        module: &str,
        func: &str,
        _arguments: &Map<String, Value>,
    ) -> Result<(), String> {
        Err(format!("python provider {module}.{func}: the Python driver is not built into this binary yet"))
    }
}
