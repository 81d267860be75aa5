//! Configuration, secrets, overrides and `${…}` substitution of Chaos Toolkit experiments, and what the
//! http and process providers make of them, against a real local HTTP service (`/echo` returns what it
//! was sent) and real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctk_support;

use chaos_controller::ctk::config::{self, Overrides, convert_to_type, load_configuration, load_secrets};
use chaos_controller::ctk::load;
use chaos_controller::ctk::run::Options;
use ctk_support::*;
use serde_json::{Map, Value, json};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn env_configuration_types_defaults_and_overrides() {
    let config = obj(json!({
        "plain": "x",
        "port": {"type": "env", "key": "PORT", "env_var_type": "int"},
        "ratio": {"type": "env", "key": "RATIO", "env_var_type": "float"},
        "on": {"type": "env", "key": "ON", "env_var_type": "bool"},
        "off": {"type": "env", "key": "OFF", "env_var_type": "bool"},
        "doc": {"type": "env", "key": "DOC", "env_var_type": "json"},
        "text": {"type": "env", "key": "TEXT", "env_var_type": "str"},
        "fallback": {"type": "env", "key": "MISSING", "default": "7", "env_var_type": "integer"},
        "untyped": {"type": "env", "key": "PORT"},
    }));
    let env = |k: &str| match k {
        "PORT" => Some("8080".to_string()),
        "RATIO" => Some("0.25".to_string()),
        "ON" => Some("yes".to_string()),
        "OFF" => Some("No".to_string()),
        "DOC" => Some(r#"{"a": [1, 2]}"#.to_string()),
        "TEXT" => Some("42".to_string()),
        _ => None,
    };
    let resolved = load_configuration(Some(&config), &Map::new(), &env).unwrap();
    assert_eq!(
        Value::Object(resolved),
        json!({"plain": "x", "port": 8080, "ratio": 0.25, "on": true, "off": false, "doc": {"a": [1, 2]},
               "text": "42", "fallback": 7, "untyped": "8080"})
    );
    // An override beats the environment and the experiment; an unknown key is added.
    let overrides = obj(json!({"port": 9, "plain": "y", "extra": "z"}));
    let resolved = load_configuration(Some(&config), &overrides, &env).unwrap();
    assert_eq!(
        (resolved["port"].clone(), resolved["plain"].clone(), resolved["extra"].clone()),
        (json!(9), json!("y"), json!("z"))
    );
    // A missing variable without default or override is an invalid experiment.
    let missing = obj(json!({"k": {"type": "env", "key": "NOPE"}}));
    let e = load_configuration(Some(&missing), &Map::new(), &no_env).unwrap_err();
    assert_eq!(e.path, ["configuration", "k", "key"]);
    assert!(e.message.contains("NOPE"), "{}", e.message);
    assert!(convert_to_type("int", &json!("3.5")).is_err());
    assert_eq!(convert_to_type("bool", &json!("0")), Ok(json!(false)));
    assert_eq!(convert_to_type("number", &json!("3")), Ok(json!(3.0)));
}

#[test]
fn secrets_inline_env_and_overrides() {
    let secrets =
        obj(json!({"api": {"token": "inline", "key": {"type": "env", "key": "API_KEY"}}, "db": {"pw": "p"}}));
    let env = |k: &str| (k == "API_KEY").then(|| "from-env".to_string());
    let resolved = load_secrets(Some(&secrets), &obj(json!({"db": {"pw": "override"}})), &env).unwrap();
    assert_eq!(
        Value::Object(resolved),
        json!({"api": {"token": "inline", "key": "from-env"}, "db": {"pw": "override"}})
    );
    let e = load_secrets(Some(&secrets), &Map::new(), &no_env).unwrap_err();
    assert_eq!(e.path, ["secrets", "api", "key", "key"]);
}

#[test]
fn var_arguments_and_var_files() {
    assert_eq!(config::parse_var("n:int", "3"), Ok(("n".into(), json!(3))));
    assert_eq!(config::parse_var("f:float", "0.5"), Ok(("f".into(), json!(0.5))));
    assert_eq!(config::parse_var("s", "3"), Ok(("s".into(), json!("3"))));
    assert_eq!(config::parse_var("s:str", "3"), Ok(("s".into(), json!("3"))));
    assert!(config::parse_var("x:foo", "1").unwrap_err().contains("invalid var type"));
    assert!(config::parse_var("n:int", "three").is_err());

    let dir = TempDir::new("ctk-var-files");
    let json_file = dir.path().join("vars.json");
    std::fs::write(&json_file, r#"{"configuration": {"a": 1}, "secrets": {"s": {"k": "v"}}}"#).unwrap();
    let yaml_file = dir.path().join("vars.yaml");
    std::fs::write(&yaml_file, "configuration:\n  a: 2\n  b: two\n").unwrap();
    let env_file = dir.path().join("vars.env");
    std::fs::write(&env_file, "# comment\nCTK_TEST_A=1\nexport CTK_TEST_B=\"two words\"\n").unwrap();
    let mut overrides = Overrides::default();
    for f in [&json_file, &yaml_file, &env_file] {
        config::read_var_file(f, &mut overrides).unwrap();
    }
    assert_eq!(Value::Object(overrides.configuration.clone()), json!({"a": 2, "b": "two"}));
    assert_eq!(Value::Object(overrides.secrets.clone()), json!({"s": {"k": "v"}}));
    assert_eq!(overrides.env_var("CTK_TEST_B").as_deref(), Some("two words"));
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "configuration: [\n").unwrap();
    let e = config::read_var_file(&bad, &mut overrides).unwrap_err();
    assert!(e.starts_with(&format!("{}:", bad.display())), "{e}");
}

#[tokio::test]
async fn substitution_reaches_providers_keeps_types_and_the_journal_keeps_the_text() {
    let dir = TempDir::new("ctk-substitution");
    let service = Service::start(dir.path()).await;
    let exp = json!({
        "title": "substitution",
        "description": "d",
        "configuration": {
            "base": service.url(),
            "limit": 5,
            "who": {"type": "env", "key": "CTK_TEST_WHO", "default": "world"},
        },
        "secrets": {"auth": {"token": "s3cr3t"}, "other": {"word": "hidden"}},
        "method": [
            {"type": "probe", "name": "get", "provider": {"type": "http", "url": "${base}/echo",
                "headers": {"X-Token": "${token}", "X-Mixed": "n=${limit}"},
                "arguments": {"q": "${who}", "n": "${limit}", "unknown": "${nope}"}, "timeout": "${limit}"}},
            {"type": "probe", "name": "post-json", "provider": {"type": "http", "method": "post", "url": "${base}/echo",
                "headers": {"Content-Type": "application/json"}, "arguments": {"n": "${limit}", "w": "$word"}}},
            {"type": "probe", "name": "post-form", "provider": {"type": "http", "method": "POST", "url": "${base}/echo",
                "arguments": {"a": "1 2", "b": "${who}"}}},
            {"type": "probe", "name": "argv", "provider": {"type": "process", "path": "printf",
                "arguments": ["%s|", "${who}", "$(echo no shell)", "", null, "${limit}"]}},
            {"type": "probe", "name": "shell", "provider": {"type": "process", "path": "echo",
                "arguments": "${who} $(echo via shell)"}},
            {"type": "probe", "name": "flags", "provider": {"type": "process", "path": "printf",
                "arguments": {"%s-%s|": "${who}"}}},
        ],
    });
    let mut overrides = Overrides::default();
    overrides.configuration.insert("who".into(), json!("override"));
    let ran = run_with(&exp, Options::default(), overrides).await;
    assert_eq!(ran.exit(), 0, "{:#}", ran.json["run"]);
    let run = &ran.json["run"];
    let get = &run[0]["output"]["body"];
    assert_eq!(get["method"], "GET");
    assert_eq!(get["target"], "/echo?q=override&n=5&unknown=%24%7Bnope%7D");
    assert_eq!(get["headers"]["x-token"], "s3cr3t", "secrets of any scope reach any header");
    assert_eq!(get["headers"]["x-mixed"], "n=5");
    let json_body: Value = serde_json::from_str(run[1]["output"]["body"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        json_body,
        json!({"n": 5, "w": "hidden"}),
        "exactly ${{limit}} keeps the number; $word is substituted"
    );
    assert_eq!(run[2]["output"]["body"]["body"], "a=1+2&b=override");
    assert_eq!(run[2]["output"]["body"]["headers"]["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(run[3]["output"]["stdout"], "override|$(echo no shell)|5|");
    assert_eq!(run[4]["output"]["stdout"], "override via shell\n");
    assert_eq!(run[5]["output"]["stdout"], "override-|");
    // The journal: activities unsubstituted, the experiment without the override.
    assert_eq!(run[0]["activity"]["provider"]["headers"]["X-Token"], "${token}");
    assert_eq!(
        ran.json["experiment"]["configuration"]["who"],
        json!({"type": "env", "key": "CTK_TEST_WHO", "default": "world"})
    );
    assert_eq!(
        ran.json["experiment"]["secrets"]["auth"]["token"], "s3cr3t",
        "inline secrets are in the journal, as in CTK"
    );
}

#[tokio::test]
async fn http_outputs_timeouts_and_json_bodies() {
    let dir = TempDir::new("ctk-http");
    let service = Service::start(dir.path()).await;
    let exp = json!({
        "title": "http", "description": "d",
        "method": [
            {"type": "probe", "name": "json", "provider": {"type": "http", "url": format!("{}/json", service.url())}},
            {"type": "probe", "name": "json-charset", "provider": {"type": "http", "url": format!("{}/json-text", service.url())}},
            {"type": "probe", "name": "missing", "provider": {"type": "http", "url": format!("{}/nothing", service.url()), "expected_status": 200}},
            {"type": "probe", "name": "pair-timeout", "provider": {"type": "http", "url": format!("{}/health", service.url()), "timeout": [1, 2]}},
        ],
    });
    let ran = run_default(&exp).await;
    let run = &ran.json["run"];
    assert_eq!(run[0]["output"]["body"]["data"]["resultType"], "vector", "application/json is parsed");
    assert_eq!(run[1]["output"]["body"], "{\"a\": 1}", "only exactly application/json is parsed");
    assert_eq!(run[2]["status"], "succeeded", "a 404 is an answer; expected_status is ignored");
    assert_eq!(run[2]["output"]["status"], 404);
    assert_eq!(run[3]["output"]["status"], 200);
    // A server that accepts and never answers: the read timeout fails the activity.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let exp = json!({"title": "t", "description": "d", "method": [
        {"type": "probe", "name": "silent", "provider": {"type": "http", "url": url, "timeout": 0.3}}]});
    let ran = run_default(&exp).await;
    assert_eq!(ran.json["run"][0]["status"], "failed");
    let exception = ran.json["run"][0]["exception"][0].as_str().unwrap();
    assert!(exception.contains("timed out"), "{exception}");
    drop(silent);
}

#[tokio::test]
async fn dynamic_configuration_is_evaluated_before_the_run() {
    let dir = TempDir::new("ctk-dynamic");
    let service = Service::start(dir.path()).await;
    let exp = json!({
        "title": "dynamic ${from_process}", "description": "d",
        "configuration": {
            "base": service.url(),
            "from_process": {"type": "probe", "name": "p", "provider": {"type": "process", "path": "echo", "arguments": ["  value  "]}},
            "from_http": {"type": "probe", "name": "h", "provider": {"type": "http", "url": "${base}/json"}},
            "failing": {"type": "probe", "name": "f", "provider": {"type": "process", "path": "false"}},
        },
        "method": [
            {"type": "probe", "name": "show", "provider": {"type": "process", "path": "echo",
                "arguments": ["${from_process}", "${failing}"]}},
        ],
    });
    let loaded = load::parse("e.json", &serde_json::to_string(&exp).unwrap(), true).unwrap();
    assert!(loaded.resolve(&Overrides::default()).is_ok());
    let ran = run_default(&exp).await;
    assert_eq!(ran.json["experiment"]["title"], "dynamic value");
    assert_eq!(ran.json["run"][0]["output"]["stdout"], "value ${failing}\n", "a failing one is left out");
}
