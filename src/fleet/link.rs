//! The Redis every task of the fleet connects to. With `--redis-password-file` the file is read
//! again before each new connection: a rotated password (a Kubernetes Secret updates its
//! mounted file in place) is taken at the next connection, without a restart. Connections
//! already open stay on the password they logged in with, as Redis keeps them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use super::FleetConfig;
use crate::secrets::{read_secret_file, url_with_password, SecretFileError};

/// How long a new connection may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The client to connect with, and the password file it follows.
pub(super) struct Link {
    /// `--redis` as configured, the password it started with included.
    url: String,
    file: Option<PathBuf>,
    held: Mutex<Held>,
}

/// The client of the password last read, and whether the file's last read failed.
struct Held {
    password: Option<String>,
    client: redis::Client,
    unreadable: bool,
}

impl Link {
    /// The link of `config`; the URL is checked by its parse (nothing connects).
    pub(super) fn new(config: &FleetConfig) -> redis::RedisResult<Link> {
        let client = redis::Client::open(config.url.as_str())?;
        // The password the URL was built with at start (the file's, decoded).
        let password = client
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned);
        Ok(Link {
            url: config.url.clone(),
            file: config.password_file.clone(),
            held: Mutex::new(Held {
                password,
                client,
                unreadable: false,
            }),
        })
    }

    /// A new connection, by the password the file holds now; `response` bounds each reply.
    pub(super) async fn connect(
        &self,
        response: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(response));
        self.client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// The client to connect with: rebuilt when the password file holds another password.
    /// An unreadable or emptied file keeps the password read before (said once).
    fn client(&self) -> redis::Client {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.file else {
            return held.client.clone();
        };
        match read_secret_file(path) {
            Ok(password) => {
                held.unreadable = false;
                if held.password.as_deref() != Some(password.as_str()) {
                    let rebuilt = url_with_password(&self.url, &password)
                        .map_err(str::to_owned)
                        .and_then(|url| redis::Client::open(url).map_err(|e| e.to_string()));
                    match rebuilt {
                        Ok(client) => {
                            held.client = client;
                            held.password = Some(password);
                            tracing::info!(path = %path.display(), "read a new password from --redis-password-file; new connections to redis use it");
                        }
                        Err(error) => {
                            // Said once: the same password is not tried again.
                            held.password = Some(password);
                            tracing::warn!(path = %path.display(), %error, "the password in --redis-password-file does not fit the --redis URL; connecting with the one read before");
                        }
                    }
                }
            }
            Err(e) => {
                if !held.unreadable {
                    held.unreadable = true;
                    let error = match e {
                        SecretFileError::Unreadable(e) => e.to_string(),
                        SecretFileError::Empty => "the file is empty".to_owned(),
                    };
                    tracing::warn!(path = %path.display(), %error, "could not read --redis-password-file again; connecting with the password read before");
                }
            }
        }
        held.client.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password_of(link: &Link) -> Option<String> {
        link.client()
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned)
    }

    #[test]
    fn the_password_file_is_read_again_and_a_bad_read_keeps_the_last_password() {
        let dir = std::env::temp_dir().join(format!("nextbest-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "first\n").unwrap();
        let link = Link::new(&FleetConfig {
            password_file: Some(file.clone()),
            ..FleetConfig::new("redis://:first@127.0.0.1:6379/0".into(), 1)
        })
        .unwrap();
        assert_eq!(password_of(&link).as_deref(), Some("first"));
        // A rotated Secret: the next connection logs in with the new password, `@`, `%` and
        // all, as written.
        std::fs::write(&file, "sec@nd:/x%41\n").unwrap();
        assert_eq!(password_of(&link).as_deref(), Some("sec@nd:/x%41"));
        // Emptied or gone: the password read before stays.
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(password_of(&link).as_deref(), Some("sec@nd:/x%41"));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(password_of(&link).as_deref(), Some("sec@nd:/x%41"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_password_file_the_url_is_used_as_given() {
        let link = Link::new(&FleetConfig::new(
            "redis://:given@127.0.0.1:6379/0".into(),
            1,
        ))
        .unwrap();
        assert_eq!(password_of(&link).as_deref(), Some("given"));
    }
}
