//! The shop's fixed catalogue: what can go into a cart.

use serde::Serialize;

/// One product. `id` is what clients send in `{item, quantity}`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Item {
    pub id: &'static str,
    pub name: &'static str,
    /// Price in cents, to keep money out of floating point.
    pub price_cents: u32,
}

/// Every item on sale, in display order.
pub const CATALOGUE: &[Item] = &[
    Item {
        id: "apple",
        name: "Apple",
        price_cents: 45,
    },
    Item {
        id: "bread",
        name: "Sourdough bread",
        price_cents: 390,
    },
    Item {
        id: "cheese",
        name: "Comté cheese, 200 g",
        price_cents: 620,
    },
    Item {
        id: "coffee",
        name: "Coffee beans, 500 g",
        price_cents: 1150,
    },
    Item {
        id: "eggs",
        name: "Eggs, box of 6",
        price_cents: 280,
    },
    Item {
        id: "milk",
        name: "Milk, 1 l",
        price_cents: 120,
    },
    Item {
        id: "olive-oil",
        name: "Olive oil, 750 ml",
        price_cents: 990,
    },
    Item {
        id: "tea",
        name: "Green tea, 100 g",
        price_cents: 540,
    },
];

/// Looks an item up by its id.
pub fn find(id: &str) -> Option<&'static Item> {
    CATALOGUE.iter().find(|item| item.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_findable() {
        for (i, item) in CATALOGUE.iter().enumerate() {
            assert_eq!(find(item.id), Some(item));
            assert!(CATALOGUE[i + 1..].iter().all(|other| other.id != item.id));
        }
        assert_eq!(find("caviar"), None);
    }
}
