//! `medic_plan::build_plan` on every inventory + playbook pair that loads. The input is up
//! to four parts separated by a line `%%`: inventory, playbook (empty or absent: the shipped
//! playbook), `--window` (absent: none) and `--set` arguments (one a line). The window goes
//! through `medic_plan::Window::parse`. Each plan that builds is rendered every way and its
//! JSON must read back losslessly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medic_fuzz::{PLAYBOOK, SPLIT, check_plan, render_problems};
use medic_plan::Window;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(4, SPLIT);
    let inv_text = parts.next().unwrap_or("");
    let pb_text = match parts.next() {
        Some(t) if !t.trim().is_empty() => t,
        _ => PLAYBOOK,
    };
    let window = match parts.next().map(str::trim).filter(|w| !w.is_empty()) {
        None => None,
        Some(w) => match Window::parse(w) {
            Ok(w) => {
                let _ = w.length_s();
                Some(w)
            }
            Err(e) => {
                let _ = e.to_string();
                None
            }
        },
    };
    let sets = medic_fuzz::set_lines(parts.next().unwrap_or(""));
    let inv = medic_config::load_inventory("inventory.yaml", inv_text);
    let pb = medic_config::load_playbook("playbook.yaml", pb_text, &sets);
    match (inv, pb) {
        (Ok(inv), Ok(pb)) => match medic_plan::build_plan(&inv, &pb, pb_text, window) {
            Ok(plan) => check_plan(&plan),
            Err(e) => {
                let _ = e.to_string();
            }
        },
        (inv, pb) => {
            if let Err(p) = inv {
                let _ = render_problems(&p);
            }
            if let Err(p) = pb {
                let _ = render_problems(&p);
            }
        }
    }
});
