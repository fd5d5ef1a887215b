"""tempest.conf as kumo writes it: dynamic credentials, kumo's endpoints and images."""

from __future__ import annotations

import configparser

from kumo.conformance.tempest_conf import CloudFacts, render


def test_render_points_tempest_at_this_kumo() -> None:
    facts = CloudFacts(url="http://127.0.0.1:4321", admin_password="pw", image_ref="i1",
                       image_ref_alt="i2", flavor_ref="c1", flavor_ref_alt="c2",
                       image_file="/tmp/tiny.qcow2")
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(render(facts))
    assert config["identity"]["uri_v3"] == "http://127.0.0.1:4321/identity/v3"
    assert config["auth"]["use_dynamic_credentials"] == "True"
    assert config["auth"]["admin_password"] == "pw"
    assert (config["compute"]["image_ref"], config["compute"]["image_ref_alt"]) == ("i1", "i2")
    assert config["compute"]["flavor_ref_alt"] == "c2"
    assert config["validation"]["run_validation"] == "False"
    assert config["service_available"]["cinder"] == "False"
    assert config["auth"]["create_isolated_networks"] == "False"


def test_validation_reaches_servers_over_floating_ips() -> None:
    facts = CloudFacts(url="http://127.0.0.1:4321", admin_password="pw", image_ref="i1",
                       image_ref_alt="i2", flavor_ref="c1", flavor_ref_alt="c2",
                       image_file="/tmp/tiny.qcow2", run_validation=True,
                       public_network_id="ext-id")
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(render(facts))
    assert config["validation"]["run_validation"] == "True"
    assert config["validation"]["image_ssh_user"] == "tiny"
    assert config["validation"]["connect_method"] == "floating"
    assert config["auth"]["create_isolated_networks"] == "True"
    assert config["network"]["public_network_id"] == "ext-id"
    assert config["network-feature-enabled"]["floating_ips"] == "True"
