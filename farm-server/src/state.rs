//! Session and application state, and the changes requests make to it.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;

use crate::catalogue;

/// Largest quantity one request may add.
pub const MAX_ADD_QUANTITY: i64 = 99;
/// Largest quantity of one item a cart may hold.
pub const MAX_ITEM_QUANTITY: u32 = 999;
/// Longest accepted user name, in characters.
pub const MAX_USER_NAME: usize = 64;

/// What a server knows about one client session. The patent's two tables:
/// session state (login data) and application state (the cart).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionState {
    /// The logged-in user name, if the client logged in.
    pub user: Option<String>,
    /// Item id → quantity (always ≥ 1; an item at zero is removed).
    pub cart: BTreeMap<String, u32>,
}

/// A session's state with the database row version it was read at (or written as).
/// Every write increments the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub state: SessionState,
    pub version: i64,
    /// The change that made `version` ([`Change::describe`]), when known: a
    /// replayed request is recognised by it. Stored, replicated and kept in the
    /// database (`sessions.last_change`) with the version.
    pub last_change: Option<String>,
}

impl SessionRecord {
    /// A record with no known last change (a new session, or a test's).
    pub fn new(state: SessionState, version: i64) -> SessionRecord {
        SessionRecord {
            state,
            version,
            last_change: None,
        }
    }
}

/// A change a request asks for, validated before it touches any store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add `quantity` of a catalogue item.
    Add { item: String, quantity: u32 },
    /// Remove an item from the cart entirely.
    Remove { item: String },
    /// Record the logged-in user.
    Login { user: String },
}

/// Why a request's change was refused. Nothing is changed when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChangeError {
    #[error("unknown item {0:?}: not in the catalogue (GET / lists the items)")]
    UnknownItem(String),
    #[error("quantity must be at least 1, got {0}")]
    QuantityTooSmall(i64),
    #[error("quantity must be at most {MAX_ADD_QUANTITY} per request, got {0}")]
    QuantityTooLarge(i64),
    #[error("the cart may hold at most {MAX_ITEM_QUANTITY} of item {item:?}; it has {have}, adding {adding} is too many")]
    CartLimit {
        item: String,
        have: u32,
        adding: u32,
    },
    #[error("item {0:?} is not in the cart")]
    NotInCart(String),
    #[error("user name must be 1 to {MAX_USER_NAME} characters without control characters or surrounding spaces")]
    BadUserName,
}

impl Change {
    /// Builds a validated add: known item, 1 ≤ quantity ≤ [`MAX_ADD_QUANTITY`].
    pub fn add(item: &str, quantity: i64) -> Result<Change, ChangeError> {
        let known =
            catalogue::find(item).ok_or_else(|| ChangeError::UnknownItem(item.to_string()))?;
        if quantity < 1 {
            return Err(ChangeError::QuantityTooSmall(quantity));
        }
        if quantity > MAX_ADD_QUANTITY {
            return Err(ChangeError::QuantityTooLarge(quantity));
        }
        Ok(Change::Add {
            item: known.id.to_string(),
            quantity: quantity as u32,
        })
    }

    /// Builds a validated removal of a catalogue item.
    pub fn remove(item: &str) -> Result<Change, ChangeError> {
        let known =
            catalogue::find(item).ok_or_else(|| ChangeError::UnknownItem(item.to_string()))?;
        Ok(Change::Remove {
            item: known.id.to_string(),
        })
    }

    /// Builds a validated login.
    pub fn login(user: &str) -> Result<Change, ChangeError> {
        let chars = user.chars().count();
        if chars == 0
            || chars > MAX_USER_NAME
            || user.chars().any(char::is_control)
            || user.trim() != user
        {
            return Err(ChangeError::BadUserName);
        }
        Ok(Change::Login {
            user: user.to_string(),
        })
    }

    /// The change in one canonical line (`add apple 2`, `remove tea`,
    /// `login alice`): two requests asking for the same change describe it alike.
    pub fn describe(&self) -> String {
        match self {
            Change::Add { item, quantity } => format!("add {item} {quantity}"),
            Change::Remove { item } => format!("remove {item}"),
            Change::Login { user } => format!("login {user}"),
        }
    }

    /// The state after this change, or why it cannot apply to `state`.
    /// Pure, so a write that lost an optimistic-concurrency race can re-apply
    /// the same change to the state it reloads.
    pub fn apply(&self, state: &SessionState) -> Result<SessionState, ChangeError> {
        let mut next = state.clone();
        match self {
            Change::Add { item, quantity } => {
                let have = next.cart.get(item).copied().unwrap_or(0);
                let total = have.saturating_add(*quantity);
                if total > MAX_ITEM_QUANTITY {
                    return Err(ChangeError::CartLimit {
                        item: item.clone(),
                        have,
                        adding: *quantity,
                    });
                }
                next.cart.insert(item.clone(), total);
            }
            Change::Remove { item } => {
                if next.cart.remove(item).is_none() {
                    return Err(ChangeError::NotInCart(item.clone()));
                }
            }
            Change::Login { user } => next.user = Some(user.clone()),
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_validates_item_and_quantity() {
        assert!(Change::add("apple", 1).is_ok());
        assert!(Change::add("apple", MAX_ADD_QUANTITY).is_ok());
        assert_eq!(
            Change::add("apple", 0),
            Err(ChangeError::QuantityTooSmall(0))
        );
        assert_eq!(
            Change::add("apple", -3),
            Err(ChangeError::QuantityTooSmall(-3))
        );
        assert_eq!(
            Change::add("apple", i64::MAX),
            Err(ChangeError::QuantityTooLarge(i64::MAX))
        );
        assert_eq!(
            Change::add("caviar", 1),
            Err(ChangeError::UnknownItem("caviar".into()))
        );
    }

    #[test]
    fn adds_accumulate_up_to_the_cart_limit() {
        let add = Change::add("tea", 99).unwrap();
        let mut state = SessionState::default();
        for _ in 0..10 {
            state = add.apply(&state).unwrap();
        }
        assert_eq!(state.cart["tea"], 990);
        let err = add.apply(&state).unwrap_err();
        assert!(matches!(err, ChangeError::CartLimit { have: 990, .. }));
    }

    #[test]
    fn remove_needs_the_item_in_the_cart() {
        let state = Change::add("milk", 2)
            .unwrap()
            .apply(&SessionState::default())
            .unwrap();
        let removed = Change::remove("milk").unwrap().apply(&state).unwrap();
        assert!(removed.cart.is_empty());
        assert_eq!(
            Change::remove("milk").unwrap().apply(&removed),
            Err(ChangeError::NotInCart("milk".into()))
        );
    }

    #[test]
    fn login_rejects_bad_names() {
        assert!(Change::login("alice").is_ok());
        assert_eq!(Change::login(""), Err(ChangeError::BadUserName));
        assert_eq!(Change::login(" bob"), Err(ChangeError::BadUserName));
        assert_eq!(Change::login("a\nb"), Err(ChangeError::BadUserName));
        assert_eq!(
            Change::login(&"x".repeat(65)),
            Err(ChangeError::BadUserName)
        );
        let state = Change::login("alice")
            .unwrap()
            .apply(&SessionState::default())
            .unwrap();
        assert_eq!(state.user.as_deref(), Some("alice"));
    }
}
