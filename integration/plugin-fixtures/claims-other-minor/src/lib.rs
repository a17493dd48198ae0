//! Fixture: otherwise a fine plugin, built with plugin-api's `__fixture_claims_other_minor` feature
//! (see `core/tests/plugins.rs`, "minor versions").

use pgdog_plugin_api::{Capabilities, Plugin};

pub struct Nothing;

impl Plugin for Nothing {
    fn capabilities(&self) -> Capabilities {
        Capabilities::READINESS
    }
}

fn new(_config: &str) -> Result<Nothing, String> {
    Ok(Nothing)
}

pgdog_plugin_api::export_plugin!(name: "fixture-claims-other-minor", constructor: new);
