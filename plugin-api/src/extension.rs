//! Named fields a struct gains in a minor version.
//!
//! abi_stable lets only prefix types gain fields between minor versions, and its prefix
//! types are read through `'static` pointers with their fields copied out: they fit
//! modules and vtables, not the snapshots and reports a plugin builds for each call. So
//! each struct that grows ([`crate::StatsSnapshot`], [`crate::DatabaseStats`],
//! [`crate::FingerprintStats`], [`crate::ReadinessCriteria`], [`crate::ReadinessReport`],
//! [`crate::DatabaseReport`], [`crate::ScrapeRequest`], [`crate::ScrapeAnswer`],
//! [`crate::ReadinessVerdict`]) ends with an [`Extensions`] list: a minor version defines
//! new names there (documented on the struct, with their type), and the next major
//! version may turn them into plain fields.
//!
//! Either side reads a name it knows and ignores the rest: a plugin built against 3.0
//! sees nothing of what 3.1 added, and a host reading a 3.0 plugin finds the 3.1 names
//! absent (`None`), which it must treat as "not measured".

use abi_stable::{
    std_types::{RString, RVec},
    StableAbi,
};

/// The value of one extension field.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub enum ExtensionValue {
    /// A measurement or a limit.
    Number(f64),
    /// A count.
    Count(u64),
    Text(RString),
    Flag(bool),
}

/// One extension field.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Extension {
    /// Lower-case, dotted for structure (`coverage.unseen_share`, `errors.class.42`).
    pub name: RString,
    pub value: ExtensionValue,
}

/// The fields a struct gained after its major version, by name.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct Extensions {
    pub fields: RVec<Extension>,
}

impl Extensions {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value named `name`, if present.
    pub fn get(&self, name: &str) -> Option<&ExtensionValue> {
        self.fields
            .iter()
            .find(|f| f.name.as_str() == name)
            .map(|f| &f.value)
    }

    /// A `Number` (or a `Count`, as a number).
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            ExtensionValue::Number(v) => Some(*v),
            ExtensionValue::Count(v) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn count(&self, name: &str) -> Option<u64> {
        match self.get(name)? {
            ExtensionValue::Count(v) => Some(*v),
            _ => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            ExtensionValue::Text(v) => Some(v.as_str()),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            ExtensionValue::Flag(v) => Some(*v),
            _ => None,
        }
    }

    /// Sets `name` (replacing an earlier value of that name).
    pub fn set(&mut self, name: &str, value: ExtensionValue) {
        match self.fields.iter_mut().find(|f| f.name.as_str() == name) {
            Some(field) => field.value = value,
            None => self.fields.push(Extension {
                name: name.into(),
                value,
            }),
        }
    }

    /// `self` with `name` set.
    pub fn with(mut self, name: &str, value: ExtensionValue) -> Self {
        self.set(name, value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_by_type_and_unknown_ones_are_absent() {
        let mut e = Extensions::default()
            .with("coverage.unseen_share", ExtensionValue::Number(0.031))
            .with("coverage.seen_once", ExtensionValue::Count(210))
            .with("policy.note", ExtensionValue::Text("shadow".into()));
        e.set("coverage.seen_once", ExtensionValue::Count(211));
        assert_eq!(e.number("coverage.unseen_share"), Some(0.031));
        assert_eq!(e.count("coverage.seen_once"), Some(211));
        assert_eq!(e.number("coverage.seen_once"), Some(211.0));
        assert_eq!(e.text("policy.note"), Some("shadow"));
        assert_eq!(e.flag("policy.note"), None);
        assert_eq!(e.get("from.a.later.minor"), None);
        assert_eq!(e.fields.len(), 3);
    }
}
