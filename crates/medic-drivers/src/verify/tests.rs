//! The mappings as tables: every known good value, each known bad one, and unknown values,
//! which must read as unverified (never as success).

use super::*;

/// (`antiMalware.state`, `moduleStatus.agentStatus`, its message, what it must read as).
type Case<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a dyn Fn(&Am) -> bool,
);

#[test]
fn manager_anti_malware_table() {
    use Am::*;
    let unverified = |a: &Am| matches!(a, Unverified(_));
    let cases: &[Case] = &[
        // Known good.
        (
            Some("on"),
            Some("active"),
            Some("Anti-Malware: On, Real Time"),
            &|a| *a == Online,
        ),
        (Some("inherited"), Some("active"), None, &|a| *a == Online),
        // Off by policy: a note, never offline.
        (Some("off"), Some("inactive"), Some("Off"), &|a| {
            *a == OffByPolicy
        }),
        (Some("off"), None, None, &|a| *a == OffByPolicy),
        (Some("inherited"), Some("inactive"), Some("Off"), &|a| {
            *a == OffByPolicy
        }),
        // The advisory's "Anti-Malware offline", in English and in Japanese.
        (
            Some("on"),
            Some("error"),
            Some("Anti-Malware Engine Offline"),
            &|a| *a == Offline,
        ),
        (
            Some("inherited"),
            Some("error"),
            Some("不正プログラム対策エンジンがオフライン"),
            &|a| *a == Offline,
        ),
        // Known bad that is not "offline": unverified, so no reinstall.
        (
            Some("on"),
            Some("error"),
            Some("Pattern update failed"),
            &unverified,
        ),
        (
            Some("on"),
            Some("warning"),
            Some("Anti-Malware: On"),
            &unverified,
        ),
        (
            Some("on"),
            Some("inactive"),
            Some("Not Activated"),
            &unverified,
        ),
        (
            Some("inherited"),
            Some("inactive"),
            Some("Offline"),
            &unverified,
        ),
        (Some("on"), Some("not-supported"), None, &unverified),
        // Unknown or missing values.
        (Some("on"), Some("green"), None, &unverified),
        (Some("on"), None, None, &unverified),
        (Some("enabled"), Some("active"), None, &unverified),
        (None, Some("active"), None, &unverified),
        (None, None, None, &unverified),
    ];
    for (state, status, message, ok) in cases {
        let got = manager_am(*state, *status, *message);
        assert!(ok(&got), "{state:?} {status:?} {message:?} -> {got:?}");
    }
}

#[test]
fn manager_update_and_agent_tables() {
    let u = |s: Option<&str>| manager_update(s, Some("m"));
    assert_eq!(u(Some("active")), Update::Current);
    assert_eq!(u(Some("error")), Update::Failed("m".to_owned()));
    assert_eq!(
        manager_update(Some("error"), None),
        Update::Failed("the manager reports a failed security update (no message)".to_owned())
    );
    for s in ["warning", "inactive", "not-supported"] {
        assert!(matches!(u(Some(s)), Update::NotCurrent(_)), "{s}");
    }
    for s in [Some("Up-to-date"), Some("ok"), Some(""), None] {
        assert!(matches!(u(s), Update::Unverified(_)), "{s:?}");
    }

    let a = |s: Option<&str>| manager_agent(s, &["Managed (Online)"]);
    assert_eq!(a(Some("active")), Agent::Active);
    assert!(matches!(a(Some("warning")), Agent::Warning(_)));
    assert!(matches!(a(Some("error")), Agent::Error(_)));
    assert!(matches!(a(Some("inactive")), Agent::Unmanaged(_)));
    assert!(matches!(a(Some("not-supported")), Agent::Unmanaged(_)));
    // dsa_query's colours are not the API's words.
    for s in [Some("green"), Some("Active"), None] {
        assert!(matches!(a(s), Agent::Unverified(_)), "{s:?}");
    }

    assert_eq!(manager_pending_reboot(&["Reboot Required"]), Some(true));
    assert_eq!(manager_pending_reboot(&["再起動が必要です"]), Some(true));
    assert_eq!(manager_pending_reboot(&["Managed (Online)"]), None);
    assert_eq!(manager_pending_reboot(&[]), None);
}

#[test]
fn host_view_table() {
    let f = |pairs: &[(&str, Value)]| -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    let s = |v: &str| Value::Str(v.to_owned());
    for (word, am) in [
        ("online", Am::Online),
        ("off", Am::OffByPolicy),
        ("offline", Am::Offline),
    ] {
        assert_eq!(host_view(&f(&[("antimalware", s(word))])).am, am);
    }
    for word in ["unknown", "on", ""] {
        assert!(matches!(
            host_view(&f(&[("antimalware", s(word))])).am,
            Am::Unverified(_)
        ));
    }
    assert!(matches!(host_view(&f(&[])).am, Am::Unverified(_)));
    let v = host_view(&f(&[("security_update_current", Value::Bool(true))]));
    assert_eq!(v.update, Update::Current);
    let v = host_view(&f(&[
        ("security_update_current", Value::Bool(false)),
        (SECURITY_UPDATE_ERROR, s("-24")),
    ]));
    assert_eq!(v.update, Update::Failed("-24".to_owned()));
    assert!(matches!(
        host_view(&f(&[("security_update_current", Value::Bool(false))])).update,
        Update::NotCurrent(_)
    ));
    // A status word where a boolean belongs is unverified, not success.
    assert!(matches!(
        host_view(&f(&[("security_update_current", s("true"))])).update,
        Update::Unverified(_)
    ));
    assert!(matches!(
        host_view(&f(&[("agent_status", s("green"))])).agent,
        Agent::Unverified(_)
    ));
    assert!(host_view(&f(&[])).build.is_err());
    assert_eq!(host_view(&f(&[])).pending_reboot, None);
}

fn build(s: &str) -> AgentBuild {
    s.parse().expect("build")
}

fn healthy() -> View {
    View {
        build: Ok(build("20.0.1-690")),
        agent: Agent::Active,
        am: Am::Online,
        update: Update::Current,
        pending_reboot: Some(false),
    }
}

fn run(
    platform: Platform,
    manager: Option<Result<View, String>>,
    host: Option<Result<View, String>>,
) -> Verdict {
    judge(Some(platform), build("20.0.1-690"), manager, host)
}

#[test]
fn healthy_hosts_pass_and_what_is_not_a_failure_is_a_note() {
    let v = run(Platform::Linux, Some(Ok(healthy())), Some(Ok(healthy())));
    assert!(v.problems.is_empty() && v.notes.is_empty(), "{v:?}");
    assert_eq!(v.facts["verified_by"], Value::Str("manager".to_owned()));

    // Anti-Malware off by policy, seen by both.
    let off = View {
        am: Am::OffByPolicy,
        ..healthy()
    };
    let v = run(Platform::Windows, Some(Ok(off.clone())), Some(Ok(off)));
    assert!(v.problems.is_empty(), "{v:?}");
    assert_eq!(v.facts["antimalware"], Value::Str("off".to_owned()));
    assert!(v.notes[0].contains("switched off by policy"), "{v:?}");

    // A pending reboot on Linux, known only to the host: a note. On Windows: a problem.
    let pending = View {
        pending_reboot: Some(true),
        ..healthy()
    };
    let manager = View {
        pending_reboot: None,
        ..healthy()
    };
    let v = run(
        Platform::Linux,
        Some(Ok(manager.clone())),
        Some(Ok(pending.clone())),
    );
    assert!(v.problems.is_empty(), "{v:?}");
    assert!(v.notes.iter().any(|n| n.contains("reboot is pending")));
    let v = run(Platform::Windows, Some(Ok(manager)), Some(Ok(pending)));
    assert_eq!(v.problems, ["a reboot is still pending"]);

    // An agent warning is a note.
    let warn = View {
        agent: Agent::Warning("Reboot Required".to_owned()),
        pending_reboot: Some(true),
        ..healthy()
    };
    let v = run(Platform::Linux, Some(Ok(warn)), None);
    assert!(v.problems.is_empty(), "{v:?}");
    assert_eq!(v.notes.len(), 2, "{v:?}");
}

#[test]
fn each_known_bad_value_fails_and_only_offline_says_offline() {
    let cases: Vec<(View, &str)> = vec![
        (
            View {
                build: Ok(build("20.0.0-100")),
                ..healthy()
            },
            "below",
        ),
        (
            View {
                am: Am::Offline,
                ..healthy()
            },
            "anti-malware is offline",
        ),
        (
            View {
                update: Update::Failed("-24".to_owned()),
                ..healthy()
            },
            "failed: -24",
        ),
        (
            View {
                update: Update::NotCurrent("pending".to_owned()),
                ..healthy()
            },
            "pending",
        ),
        (
            View {
                agent: Agent::Error("x".to_owned()),
                ..healthy()
            },
            "in error",
        ),
        (
            View {
                agent: Agent::Unmanaged("inactive".to_owned()),
                ..healthy()
            },
            "inactive",
        ),
    ];
    for (m, says) in cases {
        let v = run(Platform::Windows, Some(Ok(m.clone())), Some(Ok(healthy())));
        assert!(v.problems.iter().any(|p| p.contains(says)), "{m:?}: {v:?}");
        let offline = v.facts["antimalware"] == Value::Str("offline".to_owned());
        assert_eq!(offline, m.am == Am::Offline, "{m:?}");
    }
}

#[test]
fn unknown_values_are_unverified_never_success() {
    let unknowns = [
        View {
            build: Err("no agentVersion".to_owned()),
            ..healthy()
        },
        View {
            am: Am::Unverified("green".to_owned()),
            ..healthy()
        },
        View {
            update: Update::Unverified("Up-to-date".to_owned()),
            ..healthy()
        },
        View {
            agent: Agent::Unverified("green".to_owned()),
            ..healthy()
        },
    ];
    for m in unknowns {
        // The host's good view does not make up for the Manager's unknown one.
        let v = run(Platform::Linux, Some(Ok(m.clone())), Some(Ok(healthy())));
        assert!(!v.problems.is_empty(), "{m:?}: {v:?}");
        assert!(v.clone().reply().status != ActionStatus::Ok);
        assert_ne!(v.facts["antimalware"], Value::Str("offline".to_owned()));
    }
    let v = run(
        Platform::Linux,
        Some(Err("down".to_owned())),
        Some(Err("gone".to_owned())),
    );
    assert!(v.problems[0].starts_with("unverified"), "{v:?}");
    let v = run(Platform::Linux, None, None);
    assert!(v.problems[0].starts_with("unverified"), "{v:?}");
}

#[test]
fn disagreements_are_noted_and_the_manager_decides() {
    let host = View {
        am: Am::OffByPolicy,
        update: Update::NotCurrent("x".to_owned()),
        ..healthy()
    };
    let v = run(Platform::Linux, Some(Ok(healthy())), Some(Ok(host)));
    assert!(v.problems.is_empty(), "{v:?}");
    let note = v.notes.join("; ");
    assert!(
        note.contains("disagree")
            && note.contains("anti-malware (manager online, host off)")
            && note.contains("security update (manager succeeded, host not current)"),
        "{note}"
    );
    let r = v.reply();
    assert!(r.note().is_some_and(|n| n.contains("disagree")));

    // The Manager unreadable: the host decides, and the note says so.
    let v = run(
        Platform::Linux,
        Some(Err("timeout".to_owned())),
        Some(Ok(healthy())),
    );
    assert!(v.problems.is_empty(), "{v:?}");
    assert_eq!(v.facts["verified_by"], Value::Str("host".to_owned()));
    assert!(v.notes[0].contains("manager's view could not be read"));
    // The host unreachable: the Manager decides, noted.
    let v = run(
        Platform::Linux,
        Some(Ok(healthy())),
        Some(Err("no route".to_owned())),
    );
    assert!(
        v.problems.is_empty() && v.notes[0].contains("host's own view"),
        "{v:?}"
    );
}
