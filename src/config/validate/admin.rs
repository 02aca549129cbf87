//! `[admin]`: the admin HTTP API's listen address and token.
//!
//! Owns the rules for the listen address (an address:port) and the token (at
//! least 8 printable characters), which a listen address other than loopback
//! requires. Calls nothing but the `Validator` for the error's line.

use std::net::SocketAddr;

use super::Validator;
use crate::config::error::ConfigError;
use crate::config::model::Admin;
use crate::config::schema::AdminConfig;

impl Validator<'_> {
    pub(super) fn admin(&self, a: &AdminConfig) -> Result<Admin, ConfigError> {
        let listen: SocketAddr = a.listen.get_ref().trim().parse().map_err(|_| {
            self.err(
                a.listen.span(),
                format!(
                    "admin listen '{}' is not an address:port like \"127.0.0.1:9190\"",
                    a.listen.get_ref()
                ),
            )
        })?;
        let token = match &a.token {
            None => None,
            Some(t) => {
                let v = t.get_ref();
                if v.len() < 8 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(self.err(
                        t.span(),
                        "admin token must be at least 8 printable characters without spaces",
                    ));
                }
                Some(v.clone())
            }
        };
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(self.err(
                a.listen.span(),
                format!("admin listen {listen} is not a loopback address: set an admin token"),
            ));
        }
        Ok(Admin { listen, token })
    }
}
