//! The build parsers: `str::parse::<AgentBuild>()` and `str::parse::<ManagerBuild>()`.
//! A build that parses must print back to a string that parses to the same build.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic_model::{AgentBuild, ManagerBuild};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<AgentBuild>() {
        Ok(b) => {
            let shown = b.to_string();
            assert_eq!(shown.parse::<AgentBuild>().ok(), Some(b), "{text:?} -> {shown:?}");
            let pkg = b.package_form();
            assert_eq!(pkg.parse::<AgentBuild>().ok(), Some(b), "{text:?} -> {pkg:?}");
            let _ = b.is_none();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match text.parse::<ManagerBuild>() {
        Ok(b) => {
            let shown = b.to_string();
            assert_eq!(shown.parse::<ManagerBuild>().ok(), Some(b), "{text:?} -> {shown:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
