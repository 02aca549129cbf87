//! Names and addresses: the rules for single fields that every rule family
//! shares.
//!
//! Owns what a name may be (not empty; letters, digits, '-', '_', '.'; unique
//! among the names it is checked with) and the IP address check with its
//! message. Calls only the `Validator` for the error's line.

use std::collections::HashSet;
use std::net::IpAddr;

use toml::Spanned;

use super::Validator;
use crate::config::error::ConfigError;

impl Validator<'_> {
    /// `s` as an IP address; `what` names the field in the message.
    pub(super) fn ip(&self, s: &Spanned<String>, what: &str) -> Result<IpAddr, ConfigError> {
        s.get_ref().parse().map_err(|_| {
            self.err(
                s.span(),
                format!("{what} '{}' is not an IP address", s.get_ref()),
            )
        })
    }

    /// `s` as the name of a `what` (trimmed), not yet in `seen`, which it
    /// joins.
    pub(super) fn name(
        &self,
        s: &Spanned<String>,
        what: &str,
        seen: &mut HashSet<String>,
    ) -> Result<String, ConfigError> {
        let n = s.get_ref().trim();
        if n.is_empty() {
            return Err(self.err(s.span(), format!("{what} name is empty")));
        }
        if !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.err(
                s.span(),
                format!("{what} name '{n}' may only contain letters, digits, '-', '_' and '.'"),
            ));
        }
        if !seen.insert(n.to_string()) {
            return Err(self.err(s.span(), format!("duplicate {what} name '{n}'")));
        }
        Ok(n.to_string())
    }
}
