"""Contract test (b): the official Deep Security Python SDK (PyPI `deep-security-api`
20.0.463, generated from the DSM API spec) parses what medic's DSM simulator answers.

Run by tests/contract/sdk.sh, which starts `medic-sim serve` over examples/lab/inventory.yaml
with a generated CA. Arguments: BASE_URL CA_PEM; the API key comes from MEDIC_DSM_API_KEY.
Every check prints PASS or FAIL; the exit status is the number of failures (capped at 1).
"""

import logging
import os
import sys
import time

import deepsecurity as api
from deepsecurity import models

V = "v1"
DIRECT = "platformSettingUpdateAgentSecurityContactPrimarySourceOnMissingRelayEnabled"
failures = []


def check(what, fn):
    try:
        fn()
        print(f"PASS {what}")
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        print(f"FAIL {what}: {type(e).__name__}: {e}")
        failures.append(what)


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def main():
    # urllib3 logs each retry of the refused handshake in unknown_ca(): expected, not news.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    url, ca = sys.argv[1], sys.argv[2]
    conf = api.Configuration()
    conf.host = url
    # The SDK does not verify TLS by default: turn it on, with the simulator's CA.
    conf.verify_ssl = True
    conf.ssl_ca_cert = ca
    conf.api_key["api-secret-key"] = os.environ["MEDIC_DSM_API_KEY"]
    client = api.ApiClient(conf)
    computers = api.ComputersApi(client)
    groups = api.ComputerGroupsApi(client)
    settings = api.SystemSettingsApi(client)
    tasks = api.ScheduledTasksApi(client)

    def list_all():
        r = computers.list_computers(V, expand=["all"], overrides=False)
        expect(isinstance(r, models.Computers), type(r))
        expect(len(r.computers) == 12, f"{len(r.computers)} computers")
        by = {c.host_name: c for c in r.computers}
        relay = by["relay-tky-1"]
        expect(isinstance(relay, models.Computer), type(relay))
        expect(relay.id == 1 and relay.relay_list_id == 1, (relay.id, relay.relay_list_id))
        expect(relay.agent_version == "20.0.0.3445", relay.agent_version)
        expect(relay.platform.startswith("Red Hat"), relay.platform)
        expect(relay.computer_status.agent_status == "active", relay.computer_status)
        expect(relay.computer_status.agent_status_messages == ["Managed (Online)"], relay.computer_status)
        su = relay.security_updates
        expect(isinstance(su, models.SecurityUpdates), type(su))
        expect(su.update_status.status in ("active", "warning", "error"), su.update_status)
        expect(isinstance(su.last_changed, int), su.last_changed)
        expect(su.anti_malware[0].latest in (True, False), su.anti_malware)
        expect(relay.anti_malware.module_status.agent_status == "active", relay.anti_malware)
        expect(relay.computer_settings.platform_setting_relay_state.value == "true", relay.computer_settings)
        expect(by["web-01"].computer_settings.platform_setting_relay_state.value == "false", "web-01 relay state")
        expect(by["vm-9"].appliance_finger_print is not None, "vm-9 appliance fingerprint")
        expect(by["vm-9"].agent_finger_print is None, "vm-9 has no agent")
        expect(by["kiosk-01"].agent_version == "0.0.0.0", by["kiosk-01"].agent_version)

    def search_paged():
        seen = []
        last = 0
        while True:
            f = models.SearchFilter(
                max_items=5,
                search_criteria=[models.SearchCriteria(id_test="greater-than", id_value=last)],
            )
            page = computers.search_computers(V, search_filter=f, expand=["none"], overrides=False).computers
            seen += [c.host_name for c in page]
            expect(all(c.computer_status is None for c in page), "expand=none has no status")
            if len(page) < 5:
                break
            last = page[-1].id
        expect(len(seen) == 12 and len(set(seen)) == 12, seen)

    def search_criteria():
        f = models.SearchFilter(search_criteria=[
            models.SearchCriteria(field_name="hostName", string_test="equal", string_value="relay-%"),
            models.SearchCriteria(field_name="relayListID", numeric_test="less-than", numeric_value=3),
        ])
        r = computers.search_computers(V, search_filter=f, expand=["computerStatus", "securityUpdates"])
        names = [c.host_name for c in r.computers]
        expect(names == ["relay-tky-1", "relay-osk-1"], names)

    def describe():
        c = computers.describe_computer(4, V, expand=["securityUpdates", "antiMalware"])
        expect(c.host_name == "web-01" and c.security_updates.update_status is not None, c.host_name)

    def computer_groups():
        r = groups.list_computer_groups(V)
        by = {g.id: g for g in r.computer_groups}
        canary = [g for g in r.computer_groups if g.name == "canary"][0]
        expect(by[canary.parent_group_id].name == "tokyo", canary)
        expect(all(g.type == "folder" for g in r.computer_groups), "folders")

    def system_settings():
        s = settings.list_system_settings(V)
        expect(isinstance(s, models.SystemSettings), type(s))
        v = s.platform_setting_update_agent_security_contact_primary_source_on_missing_relay_enabled
        expect(isinstance(v, models.SettingValue) and v.value == "true", v)
        one = settings.describe_system_setting(DIRECT, V)
        expect(isinstance(one, models.SettingValue) and one.value == "true", one)
        changed = settings.modify_system_setting(DIRECT, models.SettingValue(value="false"), V)
        expect(changed.value == "false", changed)
        expect(settings.describe_system_setting(DIRECT, V).value == "false", "modified")
        settings.modify_system_setting(DIRECT, models.SettingValue(value="true"), V)

    def scheduled_tasks():
        # The run-now pattern of the vendor's samples (scheduled_task_examples.py).
        details = models.ScheduleDetails(
            recurrence_type="none",
            recurrence_count=1,
            once_only_schedule_parameters=models.OnceOnlyScheduleParameters(start_time=0),
        )
        params = models.CheckForSecurityUpdatesTaskParameters(
            computer_filter=models.ComputerFilter(type="computer", computer_id=1), timeout="never"
        )
        once = models.ScheduledTask(
            name="sdk run-now", type="check-for-security-updates", schedule_details=details,
            run_now=True, check_for_security_updates_task_parameters=params,
        )
        created = tasks.create_scheduled_task(once, V)
        expect(isinstance(created, models.ScheduledTask) and created.id > 0, created)
        expect(created.last_run_time is not None, "ran")
        daily = models.ScheduledTask(
            name="sdk daily", type="check-for-security-updates", enabled=True,
            schedule_details=models.ScheduleDetails(recurrence_type="daily", time_zone="UTC"),
            check_for_security_updates_task_parameters=models.CheckForSecurityUpdatesTaskParameters(
                computer_filter=models.ComputerFilter(type="all-computers"), timeout="one-hour"
            ),
        )
        d = tasks.create_scheduled_task(daily, V)
        listed = tasks.list_scheduled_tasks(V).scheduled_tasks
        expect([t.name for t in listed] == ["sdk daily"], [t.name for t in listed])
        got = tasks.describe_scheduled_task(d.id, V)
        expect(got.check_for_security_updates_task_parameters.computer_filter.type == "all-computers", got)
        expect(got.schedule_details.recurrence_type == "daily", got.schedule_details)
        f = models.SearchFilter(search_criteria=[models.SearchCriteria(field_name="name", string_value="sdk%")])
        found = tasks.search_scheduled_tasks(V, search_filter=f).scheduled_tasks
        expect(len(found) == 1 and found[0].id == d.id, found)
        renamed = tasks.modify_scheduled_task(d.id, models.ScheduledTask(name="sdk daily 2"), V)
        expect(renamed.name == "sdk daily 2", renamed)
        tasks.delete_scheduled_task(d.id, V)
        expect(tasks.list_scheduled_tasks(V).scheduled_tasks == [], "deleted")

    def update_finished():
        # The run-now task above ran a security update on relay-tky-1 (build affected).
        deadline = time.time() + 20
        while time.time() < deadline:
            c = computers.describe_computer(1, V, expand=["securityUpdates", "tasks"])
            if not c.tasks.agent_tasks:
                break
            time.sleep(0.1)
        expect(c.security_updates.update_status.status == "error", c.security_updates.update_status)
        expect("CERT_EXPIRE" in c.security_updates.update_status.status_message, c.security_updates)

    def bad_key():
        conf2 = api.Configuration()
        conf2.host = url
        conf2.verify_ssl = True
        conf2.ssl_ca_cert = ca
        conf2.api_key["api-secret-key"] = "wrong"
        try:
            api.ComputersApi(api.ApiClient(conf2)).list_computers(V)
        except api.rest.ApiException as e:
            expect(e.status == 403 and '"message"' in e.body, (e.status, e.body))
            return
        raise AssertionError("a wrong key was accepted")

    check("ComputersApi.list_computers (expand all): every field parsed", list_all)
    check("ComputersApi.search_computers (idTest paging, maxItems 5, expand none)", search_paged)
    check("ComputersApi.search_computers (stringTest wildcard + numericTest)", search_criteria)
    check("ComputersApi.describe_computer", describe)
    check("ComputerGroupsApi.list_computer_groups", computer_groups)
    check("SystemSettingsApi list/describe/modify", system_settings)
    check("ScheduledTasksApi create (run-now)/list/describe/search/modify/delete", scheduled_tasks)
    check("the run-now security update finished and is reported", update_finished)
    def unknown_ca():
        conf3 = api.Configuration()
        conf3.host = url
        conf3.verify_ssl = True
        conf3.api_key["api-secret-key"] = os.environ["MEDIC_DSM_API_KEY"]
        try:
            api.ComputersApi(api.ApiClient(conf3)).list_computers(V)
        except Exception as e:  # noqa: BLE001 - urllib3 wraps the SSL error
            expect("CERTIFICATE_VERIFY_FAILED" in str(e) or "SSL" in str(e), e)
            return
        raise AssertionError("the simulator's certificate was trusted without its CA")

    check("a wrong key is answered 403 with a message", bad_key)
    check("TLS is verified: without the CA the SDK refuses the server", unknown_ca)
    if failures:
        print(f"FAIL python SDK contract: {len(failures)} check(s) failed")
        return 1
    print("PASS python SDK contract: the official SDK parses every answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
