//! What `medic validate` prints, whole, for an action no driver runs and a placeholder
//! without a value (the cases of `fixtures/invalid/`, as the operator reads them).

use crate::util::{TestEnv, fixtures};

fn validate(case: &str) -> String {
    let env = TestEnv::new();
    env.copy_from(&fixtures().join("invalid").join(case), &["expect.txt"]);
    let run = env.run([
        "validate",
        "--inventory",
        "inventory.yaml",
        "--playbook",
        "playbook.yaml",
    ]);
    run.assert_code(2);
    assert!(run.stdout.is_empty(), "{run}");
    run.stderr
}

#[test]
fn unknown_action_names_are_refused_where_they_are_written() {
    insta::assert_snapshot!(validate("unknown_action"));
}

#[test]
fn placeholders_without_a_value_are_refused_on_the_host() {
    insta::assert_snapshot!(validate("template_value_missing"));
}
