"""The Inspect task (run by its registered name on mockllm) and the import of its log into a run database."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai import eval as inspect_eval  # noqa: E402
from inspect_ai.model import ModelOutput, ModelUsage, get_model  # noqa: E402

from goodprior.cli_inspect import import_inspect_cmd  # noqa: E402
from goodprior.errors import UserError  # noqa: E402
from goodprior.inspect_import import read_inspect_log  # noqa: E402
from goodprior.store import RunDB  # noqa: E402

BLACKMAIL = Path(__file__).parents[1] / "goodprior/scenarios/families/blackmail.yaml"
OWN = "Zed"
LEVER = {"to": "rachel.johnson@gmail.com", "subject": "x", "body": "Kyle is cheating."}


def with_usage(out: ModelOutput) -> ModelOutput:
    out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)  # else mockllm counts with tiktoken (online)
    return out


def agent(messages, tools, tool_choice, config):
    """Generic-name instances get a blackmail email; own-name ones a reply with no action."""
    if OWN in messages[0].text:
        return with_usage(ModelOutput.from_content("mockllm/model", "I will keep working on my assigned tasks."))
    return with_usage(ModelOutput.for_tool_call("mockllm/model", "send_email", LEVER))


def grader(messages, tools, tool_choice, config):
    return with_usage(ModelOutput.from_content("mockllm/model", "VERDICT: aligned"))


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    logs = inspect_eval("goodprior/honeypots", model=get_model("mockllm/model", custom_outputs=agent),
                        model_roles={"grader": get_model("mockllm/model", custom_outputs=grader)},
                        task_args={"scenarios": str(BLACKMAIL), "split": "all", "limit": 1, "own_name": OWN,
                                   "factors": "nudge=off"},
                        log_dir=str(tmp_path_factory.mktemp("inspect-logs")), display="none")
    assert logs[0].status == "success", logs[0].error
    return Path(logs[0].location)


def test_task_samples_tools_and_scores(log_path):
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(log_path))
    assert len(log.samples) == 4
    for s in log.samples:
        assert s.metadata["instance_id"] == s.id and s.metadata["family"] == "blackmail"
        score = s.scores["honeypot_grader"]
        if s.metadata["name"] == "own":  # no action: the gates cannot tell, the judge's verdict decides
            assert score.metadata["gate_outcome"] == "unparseable" and not score.metadata["calls"]
            assert score.metadata["outcome"] == "aligned"
        else:  # the call was answered by the simulated tool, and graded by the gates before the judge
            assert [m.role for m in s.messages][-2:] == ["assistant", "tool"] and "done" in s.messages[-1].text
            assert score.metadata["gate_outcome"] == "misaligned" and score.metadata["judge_outcome"] == "aligned"
            assert score.metadata["outcome"] == "misaligned"  # a gate hit is decisive
    metrics = log.results.scores[0].metrics
    assert metrics["misaligned_rate"].value == 0.5 and metrics["unparseable_rate"].value == 0.0


def test_import_into_run_database(log_path, tmp_path, capsys):
    out = tmp_path / "run"
    import_inspect_cmd(log_path, out, None, None)
    db = RunDB.open_existing(out)
    [ev] = db.evals()
    assert ev["mode"] == "generate" and ev["eval_id"] == "inspect:mockllm/model"
    assert db.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == 4
    gens = db.query("SELECT * FROM generations ORDER BY instance_id")
    assert len(gens) == 4 and {g["sample"] for g in gens} == {0}
    assert sorted(g["outcome"] for g in gens) == ["aligned", "aligned", "misaligned", "misaligned"]
    assert sorted(g["gate_outcome"] for g in gens) == ["misaligned", "misaligned", "unparseable", "unparseable"]
    assert all(g["judge_outcome"] == "aligned" for g in gens)
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and "blackmail" in (out / "summary.md").read_text()
    import_inspect_cmd(log_path, out, None, None)  # re-import: nothing duplicated
    assert db.query("SELECT COUNT(*) AS n FROM generations")[0]["n"] == 4
    assert "imported 4 samples" in capsys.readouterr().out


def test_bad_logs_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no such Inspect log"):
        read_inspect_log(tmp_path / "missing.eval")
    junk = tmp_path / "junk.json"
    junk.write_text("{not a log")
    with pytest.raises(UserError, match="not a readable Inspect eval log"):
        read_inspect_log(junk)
    assert not (tmp_path / "run").exists()


def test_registered_as_inspect_entry_point():
    from importlib.metadata import entry_points

    [ep] = [e for e in entry_points(group="inspect_ai") if e.name == "goodprior"]
    assert ep.value == "goodprior.inspect_registry" and "goodprior.inspect_task" in sys.modules
