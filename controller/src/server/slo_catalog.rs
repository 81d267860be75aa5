//! The controller's SLO registry as the experiment checker's [`SloCatalog`]: an experiment's `use:
//! service/name` without `file:` reads the current version the store holds (`chaos slo apply`). A lookup is
//! one indexed read of the store, done where the experiment is checked.

use std::sync::Arc;

use crate::experiment::SloCatalog;
use crate::slo_file::SloDef;
use crate::store::Store;

/// The store's current SLO versions, looked up by id.
pub struct RegistryCatalog {
    store: Arc<dyn Store>,
}

impl RegistryCatalog {
    pub fn new(store: Arc<dyn Store>) -> RegistryCatalog {
        RegistryCatalog { store }
    }
}

impl SloCatalog for RegistryCatalog {
    fn slo(&self, id: &str) -> Option<SloDef> {
        match self.store.current_slo(id) {
            Ok(found) => found.map(|stored| stored.slo),
            Err(error) => {
                tracing::warn!(%id, %error, "cannot read the SLO registry");
                None
            }
        }
    }

    fn ids(&self) -> Vec<String> {
        match self.store.current_slos() {
            Ok(all) => all.into_iter().map(|stored| stored.id).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list the SLO registry");
                Vec::new()
            }
        }
    }
}
