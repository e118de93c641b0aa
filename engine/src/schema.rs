//! The Cedar schema, compiled into the binary.
//!
//! A policy directory holds only `.cedar` files; the schema they are
//! validated against is always this one, so a policy cannot widen it.

use std::sync::LazyLock;

use cedar_policy::Schema;

/// `policies/bridle.cedarschema`, as built into this binary.
pub const SCHEMA_SOURCE: &str = include_str!("../../policies/bridle.cedarschema");

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    #[expect(clippy::expect_used, reason = "the embedded schema is a constant; a test parses it")]
    let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA_SOURCE).expect("embedded bridle.cedarschema parses");
    schema
});

/// The parsed schema.
pub fn schema() -> &'static Schema {
    &SCHEMA
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_is_identical_to_the_file_in_policies() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/bridle.cedarschema");
        let on_disk = std::fs::read_to_string(path).expect("read schema file");
        assert_eq!(SCHEMA_SOURCE, on_disk);
    }

    #[test]
    fn embedded_schema_parses_without_warnings_and_has_no_action_groups() {
        let (schema, warnings) = Schema::from_cedarschema_str(SCHEMA_SOURCE).expect("parses");
        assert_eq!(warnings.count(), 0);
        // Requests carry no action entities: `action in [..]` must only ever
        // need equality, which holds while the schema has no action groups.
        assert_eq!(schema.action_groups().count(), 0);
        assert_eq!(schema.actions().count(), crate::request::Action::ALL.len());
    }
}
