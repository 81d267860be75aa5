//! Bearer tokens: one file for the API (people, CI), one for agent enrolment.
//!
//! API token file: one token per line, `NAME TOKEN` (the name is who the audit log says acted) or just
//! `TOKEN` (named `api`). Agent token file: `TOKEN` (any agent id may enrol with it) or `AGENT_ID TOKEN`
//! (only that agent; an id named there is reserved
//! for that token, and a token for any agent may not take it). Blank lines and `#` comments are ignored. A missing file is created with one random
//! token (mode 0600), so a fresh controller is never open.

use std::io::Write as _;
use std::path::Path;

use chaos_proto::transport::{metadata_token, tokens_equal};
use tonic::metadata::MetadataMap;

use super::error::{ApiError, FileError};

/// The tokens this controller accepts.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// (name, token)
    api: Vec<(String, String)>,
    /// (agent id or None for any, token)
    agents: Vec<(Option<String>, String)>,
}

impl Tokens {
    /// Tokens given directly (tests, embedding).
    pub fn new(api: Vec<(String, String)>, agents: Vec<(Option<String>, String)>) -> Tokens {
        Tokens { api, agents }
    }

    /// Reads both files, creating each missing one with a fresh random token.
    pub fn load_or_create(api_file: &Path, agent_file: &Path) -> Result<Tokens, FileError> {
        let api = read_or_create(api_file)?;
        let agents = read_or_create(agent_file)?;
        let api = parse(&api, api_file)?
            .into_iter()
            .map(|(name, token)| (name.unwrap_or_else(|| "api".into()), token))
            .collect();
        let agents = parse(&agents, agent_file)?;
        Ok(Tokens { api, agents })
    }

    /// Who is calling the API, by their token's name; UNAUTHENTICATED without a valid token.
    pub fn api_principal(&self, metadata: &MetadataMap) -> Result<String, ApiError> {
        let token = metadata_token(metadata).ok_or_else(|| {
            ApiError::Unauthenticated(
                "missing bearer token: pass --token, --token-file or CHAOS_TOKEN".into(),
            )
        })?;
        self.api_principal_of(token).ok_or_else(|| ApiError::Unauthenticated("invalid API token".into()))
    }

    /// The name of API token `token`, if it is one (the web console's login form sends it).
    pub fn api_principal_of(&self, token: &str) -> Option<String> {
        // Every entry is compared, so the time taken does not say which one matched.
        let mut found = None;
        for (name, expected) in &self.api {
            if tokens_equal(token, expected) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Checks that a token may enrol agents at all (before its hello is read).
    pub fn agent_token<'a>(&self, metadata: &'a MetadataMap) -> Result<&'a str, ApiError> {
        let token = metadata_token(metadata).ok_or_else(|| {
            ApiError::Unauthenticated("missing bearer token: start the agent with --token".into())
        })?;
        let mut ok = false;
        for (_, expected) in &self.agents {
            ok |= tokens_equal(token, expected);
        }
        if ok { Ok(token) } else { Err(ApiError::Unauthenticated("invalid agent enrolment token".into())) }
    }

    /// Checks that `token` may enrol the agent `id`. An id named in a scoped line (`AGENT_ID TOKEN`) is
    /// reserved: only that line's token enrols it, never a token for any agent. Other ids: a token for any
    /// agent.
    pub fn agent_allowed(&self, token: &str, id: &str) -> Result<(), ApiError> {
        let mut any = false;
        let mut own = false;
        let mut reserved = false;
        let mut scoped = Vec::new();
        // Every entry is compared, so the time taken does not say which one matched.
        for (agent, expected) in &self.agents {
            let matches = tokens_equal(token, expected);
            match agent {
                None => any |= matches,
                Some(a) if a == id => {
                    reserved = true;
                    own |= matches;
                }
                Some(a) if matches => scoped.push(a.as_str()),
                Some(_) => {}
            }
        }
        if own || (any && !reserved) {
            Ok(())
        } else if reserved {
            Err(ApiError::PermissionDenied(format!(
                "agent id {id:?} is reserved for its own token in the agent token file: this token may not enrol it"
            )))
        } else {
            Err(ApiError::PermissionDenied(format!(
                "unknown agent {id:?}: this token enrols only {}",
                scoped.join(", ")
            )))
        }
    }
}

fn read_or_create(path: &Path) -> Result<String, FileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token();
            write_private(path, &format!("{token}\n"))?;
            tracing::info!(file = %path.display(), "created a token file with a new random token");
            Ok(token)
        }
        Err(source) => Err(FileError::Read { path: path.to_path_buf(), source }),
    }
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to a new file only its owner can read.
pub fn write_private(path: &Path, text: &str) -> Result<(), FileError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        create_private_dir(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| FileError::Create { path: path.to_path_buf(), source })?;
    file.write_all(text.as_bytes()).map_err(|source| FileError::Write { path: path.to_path_buf(), source })
}

/// Creates `dir` and any missing parent with mode 0700 (whatever the umask); an existing directory is left as
/// it is (its owner chose its mode).
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| FileError::CreateDir { path: dir.to_path_buf(), source })
}

/// `(name, token)` per line; errors say which line.
fn parse(text: &str, file: &Path) -> Result<Vec<(Option<String>, String)>, FileError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, token) = match fields.as_slice() {
            [token] => (None, *token),
            [name, token] => (Some((*name).to_string()), *token),
            _ => {
                return Err(FileError::Line {
                    path: file.to_path_buf(),
                    line: i + 1,
                    problem: format!("expected `TOKEN` or `NAME TOKEN`, found {} fields", fields.len()),
                });
            }
        };
        if token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(FileError::Line {
                path: file.to_path_buf(),
                line: i + 1,
                problem: "a token must be at least 16 visible ASCII characters".into(),
            });
        }
        out.push((name, token.to_string()));
    }
    if out.is_empty() {
        return Err(FileError::NoToken { path: file.to_path_buf() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(token: Option<&str>) -> MetadataMap {
        let mut m = MetadataMap::new();
        if let Some(t) = token {
            m.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        m
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccc";

    #[test]
    fn api_tokens_name_the_caller_and_refuse_the_rest() {
        let t = Tokens::new(vec![("ci".into(), A.into()), ("alice".into(), B.into())], vec![]);
        assert_eq!(t.api_principal(&meta(Some(B))).unwrap(), "alice");
        assert_eq!(
            t.api_principal(&meta(Some(C))).map_err(tonic::Status::from).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let missing = t.api_principal(&meta(None)).map_err(tonic::Status::from).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("missing bearer token"), "{missing:?}");
    }

    #[test]
    fn agent_tokens_may_be_scoped_to_one_agent() {
        let t = Tokens::new(vec![], vec![(None, A.into()), (Some("web-1".into()), B.into())]);
        let scoped = meta(Some(B));
        let token = t.agent_token(&scoped).unwrap();
        t.agent_allowed(token, "web-1").unwrap();
        let refused = t.agent_allowed(token, "db-1").map_err(tonic::Status::from).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("unknown agent \"db-1\""), "{refused:?}");
        t.agent_allowed(A, "db-1").unwrap();
        // A token for any agent may not take an id a scoped token reserves.
        let taken = t.agent_allowed(A, "web-1").map_err(tonic::Status::from).unwrap_err();
        assert_eq!(taken.code(), tonic::Code::PermissionDenied);
        assert!(taken.message().contains("\"web-1\" is reserved"), "{taken:?}");
        assert_eq!(
            t.agent_token(&meta(Some(C))).map_err(tonic::Status::from).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.agent_token(&meta(None)).map_err(tonic::Status::from).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn missing_files_are_created_private_with_a_random_token_and_bad_lines_are_located() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("chaos-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (api, agent) = (dir.join("api.token"), dir.join("agent.token"));
        let t = Tokens::load_or_create(&api, &agent).unwrap();
        let token = std::fs::read_to_string(&api).unwrap().trim().to_string();
        assert_eq!(token.len(), 64);
        assert_eq!(std::fs::metadata(&api).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(t.api_principal(&meta(Some(&token))).unwrap(), "api");
        // Read again: the same token, not a new one.
        let again = Tokens::load_or_create(&api, &agent).unwrap();
        assert_eq!(again.api_principal(&meta(Some(&token))).unwrap(), "api");
        std::fs::write(&api, "# comment\n\nci x y\n").unwrap();
        let e = Tokens::load_or_create(&api, &agent).unwrap_err().to_string();
        assert!(e.ends_with("api.token:3: expected `TOKEN` or `NAME TOKEN`, found 3 fields"), "{e}");
        std::fs::write(&api, "short\n").unwrap();
        let e = Tokens::load_or_create(&api, &agent).unwrap_err().to_string();
        assert!(e.contains(":1: a token must be at least 16"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
