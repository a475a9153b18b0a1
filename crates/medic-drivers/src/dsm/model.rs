//! The parts of the vendor's JSON shapes that medic reads. Every field is optional and
//! unknown fields are ignored: Managers of different versions add fields, and a missing
//! one must become a clear message where it is needed, not a parse failure here.

use serde::Deserialize;

/// A computer (`computer` in the vendor spec), with the expansions medic asks for.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Computer {
    #[serde(rename = "ID", default)]
    pub id: i64,
    pub host_name: Option<String>,
    #[serde(rename = "lastIPUsed")]
    pub last_ip_used: Option<String>,
    pub platform: Option<String>,
    #[serde(rename = "groupID")]
    pub group_id: Option<i64>,
    #[serde(rename = "relayListID")]
    pub relay_list_id: Option<i64>,
    pub agent_finger_print: Option<String>,
    pub appliance_finger_print: Option<String>,
    pub agent_version: Option<String>,
    pub computer_status: Option<ComputerStatus>,
    pub security_updates: Option<SecurityUpdates>,
    pub anti_malware: Option<AntiMalware>,
    pub computer_settings: Option<ComputerSettings>,
    pub tasks: Option<ComputerTasks>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputerStatus {
    pub agent_status: Option<String>,
    #[serde(default)]
    pub agent_status_messages: Vec<String>,
}

/// `computerTasks`: what the Manager is doing with the computer now, as display texts.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputerTasks {
    #[serde(default)]
    pub agent_tasks: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityUpdates {
    pub update_status: Option<UpdateStatus>,
    pub last_changed: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    pub status: Option<String>,
    pub status_message: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AntiMalware {
    pub state: Option<String>,
    pub module_status: Option<ModuleStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleStatus {
    pub agent_status: Option<String>,
    pub agent_status_message: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputerSettings {
    pub platform_setting_relay_state: Option<SettingValue>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SettingValue {
    pub value: Option<String>,
}

impl Computer {
    /// Whether the Manager shows a security update running (or queued) on the computer.
    /// The spec leaves `agentTasks` free text and the Manager's wording is not documented
    /// (the simulator says "Security Update in Progress"), so any task naming a security
    /// update counts.
    pub fn security_update_in_progress(&self) -> bool {
        self.tasks.as_ref().is_some_and(|t| {
            t.agent_tasks
                .iter()
                .any(|a| a.to_ascii_lowercase().contains("security update"))
        })
    }

    /// `platformSettingRelayState` is `"true"` (only present with `expand=computerSettings`).
    pub fn is_relay(&self) -> bool {
        self.computer_settings
            .as_ref()
            .and_then(|s| s.platform_setting_relay_state.as_ref())
            .and_then(|v| v.value.as_deref())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Computers {
    #[serde(default)]
    pub computers: Vec<Computer>,
}

/// A computer group (`computerGroup`): a folder of the Manager's computer tree.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComputerGroup {
    #[serde(rename = "ID", default)]
    pub id: i64,
    pub name: Option<String>,
    #[serde(rename = "parentGroupID")]
    pub parent_group_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ComputerGroups {
    #[serde(default)]
    pub computer_groups: Vec<ComputerGroup>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ScheduledTask {
    #[serde(rename = "ID", default)]
    pub id: i64,
}
