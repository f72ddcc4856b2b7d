"""The plan: the example works as it is; every bad answer names its key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from installer.errors import PlanError
from installer.plan import Plan, check_database, redact

EXAMPLE = Path(__file__).parents[2] / "installer" / "examples" / "single-node.toml"


def test_the_example_is_the_default_all_in_one_install() -> None:
    plan = Plan.load(EXAMPLE)
    assert plan == Plan(role="all-in-one")
    assert plan.endpoint == "http://127.0.0.1:8081"
    assert plan.units == ["shipyard-controlplane.service", "shipyard-node.service"]
    assert plan.effective_node_id.startswith("i-")


def test_to_toml_round_trips() -> None:
    plan = Plan(
        role="node",
        controlplane_url="http://cp.example:8081",
        join_token="syj_abc",
        node_id="gpu-01",
        state_dir=Path("/srv/shipyard"),
        network_mode="bridge",
    )
    assert Plan.from_toml(plan.to_toml()) == plan
    assert plan.endpoint == "http://cp.example:8081"
    assert plan.units == ["shipyard-node.service"]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        # the types, by the one config loader (hostlib)
        ('role = "all"', """key "role": expected one of 'all-in-one' or 'node', got "all\""""),
        ('role = "all-in-one"\nprot = 8081', 'unknown key "prot" (did you mean "port"?)'),
        ('role = "all-in-one"\nport = "8081"', 'key "port": expected a whole number, got "8081"'),
        ('role = "all-in-one"\ninstall_engine = "yes"', 'expected true or false, got "yes"'),
        ('role = "all-in-one"\nnetwork_mode = "nat"', "expected one of 'none', 'bridge' or"),
        ("port = 1", 'key "role" is required'),
        ("role = ", "not valid TOML"),
        # what the types do not say, by the plan's own checks
        ('role = "all-in-one"\nport = 70000', "port must be between 1 and 65535"),
        ('role = "all-in-one"\nstate_dir = "var/lib"', "state_dir must be an absolute path"),
        ('role = "all-in-one"\ndatabase_url = "mysql://x/y"', "database_url must start with"),
        ('role = "all-in-one"\njoin_token = "syj_x"', "join_token is only for role 'node'"),
        ('role = "node"\njoin_token = "syj_x"', "controlplane_url is required for role 'node'"),
        (
            'role = "node"\ncontrolplane_url = "http://cp:8081"',
            "join_token is required for role 'node'",
        ),
        ('role = "all-in-one"\nnode_id = "has space"', "node_id 'has space' must be"),
        ('role = "all-in-one"\nbind_host = "not a host!"', "bind_host 'not a host!'"),
    ],
)
def test_bad_answers_name_the_key(answers: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        Plan.from_toml(answers, source="answers.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("answers.toml: ")


def test_a_state_dir_too_long_for_kernel_sockets_is_refused() -> None:
    with pytest.raises(PlanError, match=r"state_dir .* too long"):
        Plan(role="all-in-one", state_dir=Path("/" + "x" * 80))


def test_load_says_which_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(
        PlanError, match=re.escape(f"{tmp_path}/nope.toml: cannot read it: No such file")
    ):
        Plan.load(tmp_path / "nope.toml")


def test_redact() -> None:
    assert redact("postgresql+asyncpg://u:secret@h/db") == "postgresql+asyncpg://u:***@h/db"
    assert redact("postgresql+asyncpg://h/db") == "postgresql+asyncpg://h/db"


@pytest.mark.trio
async def test_database_check_says_why_it_cannot_connect() -> None:
    await check_database("")  # the embedded database needs no check
    with pytest.raises(PlanError) as caught:
        await check_database("postgresql+asyncpg://u:secret@127.0.0.1:1/db", time_limit=5)
    text = str(caught.value)
    assert text.startswith("cannot use the database at postgresql+asyncpg://u:***@127.0.0.1:1/db")
    assert "secret" not in text
    assert "refused" in text.lower()


@pytest.mark.trio
@pytest.mark.postgres
async def test_database_check_against_a_real_postgresql() -> None:
    dsn = os.environ.get("SHIPYARD_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("set SHIPYARD_TEST_POSTGRES_DSN (./dev test does) to test PostgreSQL")
    await check_database(dsn)
    wrong = dsn.replace("://shipyard:shipyard@", "://shipyard:wrong@")
    with pytest.raises(PlanError, match="password authentication failed"):
        await check_database(wrong)
