//! Fixture: a valid shared library without a pgdog plugin root module.

#[no_mangle]
pub extern "C" fn pgdog_fixture_answer() -> u32 {
    42
}
