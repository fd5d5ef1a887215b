"""Reading tempest's results: counts, the interop verdicts, known failures."""

from __future__ import annotations

from kumo.conformance.results import (
    parse_csv,
    read_known_failures,
    required_outcomes,
    unexpected_failures,
)

CSV = """test,status,start_time,stop_time
"tempest.api.image.v2.test_images.BasicOperationsImagesTest.test_delete_image[id-1,smoke]",success,a,b
tempest.api.image.v2.test_images.ListImagesTest.test_list_no_params[id-2],fail,a,b
tempest.api.image.v2.test_images.ImportImagesTest.test_image_import[id-3],skip,a,b
setUpClass (tempest.api.identity.admin.v3.test_groups.GroupsV3TestJSON),fail,a,b
tempest.api.compute.servers.test_x.Y.test_z[id-4],xfail,a,b
"""


def test_counts_and_summary_line() -> None:
    results = parse_csv(CSV)
    assert results.summary() == "2 passed, 2 failed, 1 skipped"
    assert results.pass_rate == 0.5


def test_required_outcomes_count_a_failed_class_as_failed() -> None:
    results = parse_csv(CSV)
    required = [
        "tempest.api.image.v2.test_images.BasicOperationsImagesTest.test_delete_image[id-1,smoke]",
        "tempest.api.identity.admin.v3.test_groups.GroupsV3TestJSON.test_group_users_add_list",
        "tempest.api.network.test_networks.NetworksTest.test_list_networks[id-9]",
        "tempest.api.image.v2.test_images.ImportImagesTest.test_image_import[id-3]",
    ]
    assert list(required_outcomes(results, required).values()) == [
        "passed", "failed", "not run", "skipped"]


def test_known_failures_by_test_class_or_module() -> None:
    known = read_known_failures(
        "# comment line\n"
        "tempest.api.image.v2.test_images.ListImagesTest.test_list_no_params  # why (#13)\n"
        "tempest.api.identity.admin.v3.test_groups  # groups, later\n")
    assert known["tempest.api.identity.admin.v3.test_groups"] == "groups, later"
    results = parse_csv(CSV)
    assert unexpected_failures(results, known) == []
    assert unexpected_failures(results, {}) == results.failed
