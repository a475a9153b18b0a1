//! Loading and validation of medic's inputs: the inventory (v1), the playbook and `--set`
//! parameters. This is the only crate that knows YAML. Every problem in a file is collected
//! and reported together, each with file, line, column, what is wrong and what to do.

pub mod ansible;
mod diag;
mod inventory;
mod playbook;
mod set;
mod write;
pub mod yaml;

pub use diag::{Problem, Problems, SourceFile};
pub use inventory::{host_location, inventory_warnings, load_inventory};
pub use playbook::{
    DriverActions, PLAYBOOK_FORMAT, host_fact_type, load_playbook, load_playbook_for,
};
pub use write::{write_inventory, yaml_quote};
