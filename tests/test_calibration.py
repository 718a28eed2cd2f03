"""Learning-rate calibration: the criterion on hand-made grids, the config's checks, the choose stage,
and the reports that show the choices."""

from __future__ import annotations

import copy
import json
import math

import pandas as pd
import pytest
import yaml

from unlearning import calibration as C
from unlearning.config import ConfigError, validate
from unlearning.report import calibration as report
from unlearning.report.findings import findings
from unlearning.report.findings_report import findings_markdown
from unlearning.report.tables import main_table, main_table_markdown
from unlearning.stages.calibrate import calibrate

from conftest import ROOT


def pt(scale, forget, utility):
    return {"scale": scale, "forget": forget, "utility": utility}


# ----------------------------------------------------------------------------------------- criterion


def test_best_utility_among_the_points_that_reach_the_ceiling():
    grid = [pt(0.3, 40.0, 90.0), pt(1, 15.0, 70.0), pt(3, 5.0, 60.0), pt(10, 1.0, 10.0)]
    c = C.choose(grid, ceiling=18.9)
    assert c == {"scale": 1.0, "reached": True, "gap": pytest.approx(15.0 - 18.9), "at_grid_edge": False}


def test_a_point_exactly_at_the_ceiling_qualifies():
    assert C.choose([pt(1, 18.9, 50.0), pt(3, 2.0, 40.0)], ceiling=18.9)["scale"] == 1.0


def test_a_point_at_the_ceiling_up_to_float_rounding_qualifies():
    # measured (MUSE NPO, Adam, seed 1): KnowMem_f 13.333333333333332 at x3 against the retrain model's
    # 8.33333333333333 + a margin of 5 = 13.33333333333333; equal in exact arithmetic
    ceiling = C.threshold({"criterion": "match_retrain", "margin": 5.0}, 8.33333333333333)
    forget = 13.333333333333332
    assert forget > ceiling and forget - ceiling < 1e-12
    c = C.choose([pt(1, 19.4, 48.0), pt(3, forget, 33.8)], ceiling)
    assert c == {"scale": 3.0, "reached": True, "gap": 0.0, "at_grid_edge": True}
    assert C.qualifies(forget, ceiling) and not C.qualifies(ceiling + 1e-6, ceiling)


def test_none_reaches_takes_the_lowest_forget_and_says_how_far():
    grid = [pt(0.3, 95.0, 80.0), pt(1, 60.0, 75.0), pt(3, 30.0, 50.0)]
    c = C.choose(grid, ceiling=18.9)
    assert c["scale"] == 3.0 and c["reached"] is False
    assert c["gap"] == pytest.approx(30.0 - 18.9)
    assert c["at_grid_edge"] is True


def test_ties_go_to_better_utility_then_lower_forget_then_smaller_multiplier():
    # equal utility: the lower forget metric
    assert C.choose([pt(1, 10.0, 50.0), pt(3, 4.0, 50.0)], ceiling=20)["scale"] == 3.0
    # equal utility and forget: the smaller multiplier
    assert C.choose([pt(3, 4.0, 50.0), pt(1, 4.0, 50.0)], ceiling=20)["scale"] == 1.0
    # none reaches, equal forget: the better utility, then the smaller multiplier
    assert C.choose([pt(1, 30.0, 40.0), pt(3, 30.0, 45.0)], ceiling=20)["scale"] == 3.0
    assert C.choose([pt(3, 30.0, 45.0), pt(1, 30.0, 45.0)], ceiling=20)["scale"] == 1.0


def test_a_single_point_is_never_at_a_grid_edge_and_bad_points_are_refused():
    assert C.choose([pt(1, 50.0, 50.0)], ceiling=20)["at_grid_edge"] is False
    with pytest.raises(ValueError, match="no grid points"):
        C.choose([], ceiling=20)
    with pytest.raises(ValueError, match="no finite forget"):
        C.choose([pt(1, math.nan, 50.0)], ceiling=20)


def test_threshold_from_the_retrain_model_or_fixed():
    assert C.threshold({"criterion": "match_retrain", "margin": 5.0}, 13.9) == pytest.approx(18.9)
    assert C.threshold({"criterion": "forget_at_most", "threshold": 30.0, "margin": 5.0}, None) == 30.0
    with pytest.raises(ValueError, match="retrain"):
        C.threshold({"criterion": "match_retrain", "margin": 5.0}, None)


# ----------------------------------------------------------------------------------------- early stopping


def test_a_muse_run_matches_when_knowmem_and_verbmem_each_meet_their_ceiling():
    assert C.CRITERION_METRICS["muse"] == ("knowmem_f", "verbmem_f", "knowmem_r")
    assert C.forget_metrics("wmdp") == ("wmdp_acc",) and C.utility_metric("wmdp") == "mmlu_acc"
    cal = {"criterion": "match_retrain", "margin": 5.0}
    ceils = C.ceilings(cal, {"knowmem_f": 10.0, "verbmem_f": 30.0}, ["knowmem_f", "verbmem_f"])
    assert ceils == {"knowmem_f": 15.0, "verbmem_f": 35.0}
    assert C.meets({"knowmem_f": 15.0, "verbmem_f": 20.0}, ceils)
    assert not C.meets({"knowmem_f": 12.0, "verbmem_f": 36.0}, ceils)  # VerbMem_f still above its ceiling
    assert C.excess({"knowmem_f": 12.0, "verbmem_f": 36.0}, ceils) == 1.0
    # overshot: every metric more than the margin below the retrain level (only then could an earlier
    # check have matched); VerbMem_f alone far below while KnowMem_f is near is not
    assert C.overshoots({"knowmem_f": 4.0, "verbmem_f": 20.0}, cal, {"knowmem_f": 10.0, "verbmem_f": 30.0})
    assert not C.overshoots({"knowmem_f": 6.0, "verbmem_f": 2.0}, cal, {"knowmem_f": 10.0, "verbmem_f": 30.0})
    assert not C.overshoots({"wmdp_acc": 0.0}, {"criterion": "forget_at_most", "threshold": 30}, {"wmdp_acc": None})


def test_the_ladder_climbs_only_while_a_run_never_reached():
    R, O, S = C.REACHED, C.OVERSHOT, C.SHORT
    status = {(1.0, 0): S, (3.0, 0): R, (1.0, 1): R, (1.0, 2): S, (3.0, 2): S, (10.0, 2): S}
    asked = []

    def done(x, s):
        asked.append((x, s))
        return status.get((x, s), R)

    assert C.walk([10, 1, 3], [0, 1, 2], done, per_seed=True) == [
        (1.0, 0), (3.0, 0), (1.0, 1), (1.0, 2), (3.0, 2), (10.0, 2)]
    # together (one choice for all seeds): the next rung for every seed while any seed did not reach
    assert C.walk([1, 3, 10], [0, 1], done, per_seed=False) == [(1.0, 0), (1.0, 1), (3.0, 0), (3.0, 1)]
    # a rung is read only once the one below it did not reach (the workflow's checkpoints, one per rung)
    asked.clear()
    C.walk([1, 3, 10], [1], done, per_seed=True)
    assert asked == [(1.0, 1)]
    # a run not made yet (None) ends its seed's walk there: the workflow runs it, then walks again
    pending = {**status, (3.0, 0): None}
    assert C.walk([1, 3, 10], [0, 2], lambda x, s: pending.get((x, s), R), per_seed=True) == [
        (1.0, 0), (3.0, 0), (1.0, 2), (3.0, 2), (10.0, 2)]
    assert C.walk([1, 3, 10], [0, 2], lambda x, s: None, per_seed=False) == [(1.0, 0), (1.0, 2)]
    # without rungs below, an overshooting first rung ends the walk as one that reached
    assert C.walk([1, 3], [0], lambda x, s: O, per_seed=True) == [(1.0, 0)]


def test_the_ladder_steps_down_while_its_first_rung_overshoots():
    R, O, S = C.REACHED, C.OVERSHOT, C.SHORT
    status = {(1.0, 0): O, (0.3, 0): R, (1.0, 1): R, (1.0, 2): O, (0.3, 2): O, (0.1, 2): S,
              (1.0, 3): S, (3.0, 3): O}
    walked = C.walk([1, 3], [0, 1, 2, 3], lambda x, s: status[(x, s)], per_seed=True, below=[0.1, 0.3])
    # seed 0 lands at x0.3; seed 1 reached at x1; seed 2 overshoots at x0.3 too, and x0.1 never
    # reaches; seed 3 overshoots at x3, which is not the first rung: no rung lies between x1 and x3
    assert walked == [(1.0, 0), (0.3, 0), (1.0, 1), (1.0, 2), (0.3, 2), (0.1, 2), (1.0, 3), (3.0, 3)]
    # a rung below is made before the walk reads it
    assert C.walk([1, 3], [0], lambda x, s: {1.0: O}.get(x), per_seed=True, below=[0.3]) == [(1.0, 0), (0.3, 0)]
    # together: down only when every seed reached and one overshot, and while one still overshoots
    both = {(1.0, 0): O, (1.0, 1): R, (0.3, 0): R, (0.3, 1): R}
    assert C.walk([1, 3], [0, 1], lambda x, s: both[(x, s)], per_seed=False, below=[0.3]) == [
        (1.0, 0), (1.0, 1), (0.3, 0), (0.3, 1)]
    assert C.walk([1, 3], [0, 1], lambda x, s: {(1.0, 0): O, (1.0, 1): S}.get((x, s), R), per_seed=False,
                  below=[0.3]) == [(1.0, 0), (1.0, 1), (3.0, 0), (3.0, 1)]
    with pytest.raises(ValueError, match="under its first, 1"):
        C.walk([1, 3], [0], lambda x, s: R, per_seed=True, below=[1])
    # the choice is the smallest multiplier that reached: the rung below, not the overshooting x1
    c = C.choose_ladder([rung(1, 1.8, 14, -13.8, True, overshot=True), rung(0.3, 12.3, 40, -3.2, True)], top=3)
    assert c["scale"] == 0.3 and c["reached"] and not c["overshot"]


def test_a_run_record_says_whether_it_reached_overshot_or_fell_short():
    assert C.run_status({"early_stop": {"reached": True, "overshot": False}}) == C.REACHED
    assert C.run_status({"early_stop": {"reached": True, "overshot": True}}) == C.OVERSHOT
    assert C.run_status({"early_stop": {"reached": False, "overshot": False}}) == C.SHORT
    with pytest.raises(ValueError, match="r.json: no early_stop record"):
        C.run_status({}, "r.json")


def rung(scale, forget, utility, excess, reached, overshot=False):
    return {"scale": scale, "forget": forget, "utility": utility, "excess": excess, "reached": reached,
            "overshot": overshot}


def test_the_ladder_runs_the_rung_that_reached_or_flags_the_closest():
    c = C.choose_ladder([rung(1, 40, 90, 25.0, False), rung(3, 12, 70, -3.0, True)], top=10)
    assert c == {"scale": 3.0, "reached": True, "overshot": False, "gap": -3.0, "at_grid_edge": False}
    assert C.status(c) == "reached"
    c = C.choose_ladder([rung(1, 2, 60, -12.0, True, overshot=True)], top=10)
    assert (c["scale"], C.status(c)) == (1.0, "overshot")
    c = C.choose_ladder([rung(1, 60, 90, 45.0, False), rung(3, 30, 80, 15.0, False),
                         rung(10, 35, 20, 20.0, False)], top=10)
    assert c == {"scale": 3.0, "reached": False, "overshot": False, "gap": 15.0, "at_grid_edge": False}
    assert C.status(c) == "not reached"
    assert C.choose_ladder([rung(10, 12, 70, -3.0, True)], top=10)["at_grid_edge"] is True
    assert C.worst(["reached", "overshot"]) == "overshot" and C.worst(["overshot", "not reached"]) == "not reached"
    assert C.status(None) == "off"


def _run(tmp_path, name, seed, scale, reached, overshot=False, **metrics):
    d = tmp_path / name
    d.mkdir(parents=True)
    metrics.setdefault("verbmem_f", 0.0)
    es = {"reached": reached, "overshot": overshot, "stop_step": 20 if reached else None, "metrics": metrics}
    (d / "unlearning.json").write_text(json.dumps({"seed": seed, "lr_multiplier": scale, "early_stop": es}))
    return f"{scale:g}={d}"


def test_choose_stage_reads_the_ladders_runs(tmp_path):
    meta = {"benchmark": "muse", "method": "graddiff", "optimizer": "zo", "grade": "zeroth"}
    params = {"criterion": "match_retrain", "margin": 5.0, "per_seed": True}
    runs = [_run(tmp_path, "a", 0, 1, False, knowmem_f=60, knowmem_r=90),
            _run(tmp_path, "b", 0, 3, True, knowmem_f=14, knowmem_r=70),
            _run(tmp_path, "c", 1, 1, True, True, knowmem_f=2, knowmem_r=50),
            _run(tmp_path, "d", 2, 1, False, knowmem_f=80, knowmem_r=95),
            _run(tmp_path, "e", 2, 3, False, knowmem_f=30, verbmem_f=50, knowmem_r=60)]
    retrain = [_eval(tmp_path / f"retrain{s}.json", s, knowmem_f=10.0, verbmem_f=30.0, knowmem_r=66.0)
               for s in (0, 1, 2)]
    target = [_eval(tmp_path / f"target{s}.json", s, knowmem_f=95.0, verbmem_f=100.0, knowmem_r=98.0)
              for s in (0, 1, 2)]
    rec = calibrate([], retrain, target, "muse", params, meta, tmp_path / "choice.json", runs=runs, top=10)
    got = {s: (g["scale"], C.status(g), g["at_grid_edge"]) for s, g in rec["by_seed"].items()}
    assert got == {"0": (3.0, "reached", False), "1": (1.0, "overshot", False), "2": (3.0, "not reached", False)}
    assert rec["early_stop"] is True and rec["forget_metrics"] == ["knowmem_f", "verbmem_f"]
    seed2 = rec["by_seed"]["2"]
    assert seed2["ceilings"] == {"knowmem_f": 15.0, "verbmem_f": 35.0}
    assert seed2["gap"] == 15.0  # the worse of KnowMem_f (30 - 15) and VerbMem_f (50 - 35)
    assert [(p["scale"], p["stop_step"], p["qualifies"]) for p in rec["by_seed"]["0"]["points"]] == [
        (1.0, [None], False), (3.0, [20], True)]
    df = report.table([rec])
    assert list(df[df.chosen].status) == ["reached", "overshot", "not reached"]
    csv = tmp_path / "calibration.csv"
    df.to_csv(csv, index=False)
    assert report.choices(csv)[("muse", "graddiff", "zo")]["status"] == "not reached"
    with pytest.raises(ValueError, match="no early_stop record"):
        (tmp_path / "f").mkdir()
        (tmp_path / "f" / "unlearning.json").write_text(json.dumps({"seed": 0}))
        calibrate([], retrain, target, "muse", params, meta, tmp_path / "c2.json", runs=[f"1={tmp_path / 'f'}"], top=3)


# ----------------------------------------------------------------------------------------- config


def default_config() -> dict:
    return validate(yaml.safe_load((ROOT / "config.yaml").read_text()))


def test_grids_multipliers_tags_and_model_seeds():
    cfg = default_config()
    assert C.grid(cfg, "adam") == [1.0, 3.0, 10.0]
    assert C.grid(cfg, "zo") == [1.0, 3.0, 10.0]
    # early stopping: checks every 5 steps within the unlearning steps (50); off, or without calibration
    assert C.early_stop(cfg) == {"every": 5, "below": [0.3], "max_steps": None} and C.budget(cfg) == 50
    assert C.early_stop({**cfg, "calibration": {**cfg["calibration"], "early_stop": False}}) is None
    assert [C.tag(x) for x in (0.3, 1.0, 3, 10.0, 1e-5)] == ["0.3", "1", "3", "10", "1e-05"]
    # a target and a retrain model per seed in the default study; a role not listed is trained once
    assert C.model_seed(cfg, "target", 2) == 2 and C.model_seed(cfg, "retrain", 2) == 2
    assert C.model_seeds(cfg, "retrain", [0, 1, 2]) == [0, 1, 2]
    cfg["training"]["per_seed"] = ["target"]
    assert C.model_seed(cfg, "retrain", 2) == 0 and C.model_seeds(cfg, "retrain", [0, 1, 2]) == [0]
    off = copy.deepcopy(cfg)
    off["calibration"] = False
    assert C.grid(off, "zo") == [1.0] and C.seeds(off) == [] and not C.enabled(off)
    assert C.early_stop(off) is None and C.budget(off) is None


def test_calibration_is_off_unless_configured():
    cfg = validate(yaml.safe_load((ROOT / "configs" / "tofu.yaml").read_text()))
    assert cfg["calibration"] is False and cfg["training"]["per_seed"] == []


@pytest.mark.parametrize("change, message", [
    ({"calibration": {"grids": {"nosuch": [1]}}}, "calibration.grids: unknown optimizer 'nosuch'"),
    ({"calibration": {"criterion": "forget_at_most"}}, "calibration.threshold: required"),
    ({"calibration": {"grid": [0, 1]}}, "calibration"),
    ({"benchmarks": {"wmdp": {"kind": "wmdp", "retrain": False}}}, "calibration.criterion: match_retrain needs"),
    ({"benchmarks": {"muse": {"kind": "muse", "target": "some/hub-model"}}}, "training.per_seed: target"),
])
def test_bad_calibration_config_is_one_line_naming_the_key(change, message):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    for key, value in change.items():
        if key == "benchmarks":
            cfg["benchmarks"] = {**cfg["benchmarks"], **value}
        else:
            cfg[key] = {**cfg[key], **value}
    with pytest.raises(ConfigError, match=message) as err:
        validate(cfg)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------- stage


def _eval(path, seed, **metrics):
    """An unattacked evaluation; MUSE's VerbMem_f at 0 unless given (its ceiling then never binds)."""
    metrics.setdefault("verbmem_f", 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "muse", "seed": seed, "attack": "none", "metrics": metrics}))
    return str(path)


def test_choose_stage_averages_seeds_and_records_every_point(tmp_path):
    points = []
    for scale, values in {"0.3": [(60, 90), (50, 80)], "1": [(20, 70), (10, 60)], "3": [(2, 30), (4, 20)]}.items():
        for seed, (f, u) in enumerate(values):
            p = _eval(tmp_path / f"x{scale}" / f"seed{seed}.json", seed, knowmem_f=f, knowmem_r=u)
            points.append(f"{scale}={p}")
    retrain = [_eval(tmp_path / "retrain.json", 0, knowmem_f=13.9, knowmem_r=66.0)]
    target = [_eval(tmp_path / "target.json", 0, knowmem_f=96.5, knowmem_r=80.0)]
    meta = {"benchmark": "muse", "method": "graddiff", "optimizer": "adam", "grade": "first"}
    rec = calibrate(points, retrain, target, "muse", {"criterion": "match_retrain", "margin": 5.0}, meta,
                    tmp_path / "choice.json")
    assert json.loads((tmp_path / "choice.json").read_text()) == rec
    assert [(p["scale"], p["forget"], p["utility"], p["seeds"]) for p in rec["points"]] == [
        (0.3, 55.0, 85.0, [0, 1]), (1.0, 15.0, 65.0, [0, 1]), (3.0, 3.0, 25.0, [0, 1])]
    assert rec["threshold"] == pytest.approx(18.9)
    assert (rec["scale"], rec["reached"], rec["at_grid_edge"]) == (1.0, True, False)
    assert [p["qualifies"] for p in rec["points"]] == [False, True, True]
    assert (rec["retrain_forget"], rec["target_forget"], rec["target_utility"]) == (13.9, 96.5, 80.0)
    with pytest.raises(ValueError, match="no metric knowmem_r"):
        bad = _eval(tmp_path / "bad.json", 0, knowmem_f=1.0)
        calibrate([f"1={bad}"], retrain, target, "muse", {"criterion": "match_retrain", "margin": 5.0}, meta,
                  tmp_path / "c2.json")


@pytest.mark.slow
def test_each_seed_chooses_from_its_own_points_against_its_own_references(tmp_path):
    """`calibration.seeds: each`: a seed's choice reads only its own grid points, its own target, and
    the retrain model (one shared, or its own when trained per seed)."""
    grid = {"0.3": [(60, 90), (16, 85), (50, 80)], "1": [(18, 70), (10, 60), (30, 75)],
            "3": [(2, 30), (4, 20), (12, 40)]}
    points = [f"{x}={_eval(tmp_path / f'x{x}' / f'seed{s}.json', s, knowmem_f=f, knowmem_r=u)}"
              for x, values in grid.items() for s, (f, u) in enumerate(values)]
    targets = [_eval(tmp_path / f"target{s}.json", s, knowmem_f=t, knowmem_r=80.0)
               for s, t in enumerate((96.5, 72.2, 95.4))]
    meta = {"benchmark": "muse", "method": "graddiff", "optimizer": "adam", "grade": "first"}
    params = {"criterion": "match_retrain", "margin": 5.0, "per_seed": True}
    shared = [_eval(tmp_path / "retrain0.json", 0, knowmem_f=13.9, knowmem_r=66.0)]
    rec = calibrate(points, shared, targets, "muse", params, meta, tmp_path / "choice.json")
    assert "scale" not in rec and sorted(rec["by_seed"]) == ["0", "1", "2"]
    # seed 0: x1 (18 <= 18.9) has the best utility; seed 1: x0.3 already forgot (16); seed 2: only x3
    # reaches; each against the one retrain model's ceiling and its own target
    got = {s: (g["scale"], g["reached"], g["threshold"], g["target_forget"]) for s, g in rec["by_seed"].items()}
    assert got == {"0": (1.0, True, pytest.approx(18.9), 96.5), "1": (0.3, True, pytest.approx(18.9), 72.2),
                   "2": (3.0, True, pytest.approx(18.9), 95.4)}
    assert [p["seeds"] for p in rec["by_seed"]["1"]["points"]] == [[1], [1], [1]]
    assert [C.chosen(rec, s) for s in (0, 1, 2)] == [1.0, 0.3, 3.0]
    assert [(g["seed"], g["scale"]) for g in C.groups(rec)] == [(0, 1.0), (1, 0.3), (2, 3.0)]
    # a retrain model per seed sets each seed's own ceiling: seed 2's (6 + 5) is not reached (x3: 12)
    own = [_eval(tmp_path / f"retrain{s}.json", s, knowmem_f=r, knowmem_r=66.0) for s, r in enumerate((13.9, 13.9, 6))]
    rec = calibrate(points, own, targets, "muse", params, meta, tmp_path / "choice2.json")
    assert (rec["by_seed"]["2"]["scale"], rec["by_seed"]["2"]["reached"]) == (3.0, False)
    assert rec["by_seed"]["2"]["gap"] == pytest.approx(1.0) and rec["by_seed"]["0"]["scale"] == 1.0
    with pytest.raises(ValueError, match="no target evaluation of seed 2"):
        calibrate(points, shared, targets[:2], "muse", params, meta, tmp_path / "c3.json")
    with pytest.raises(ValueError, match="seed 2 has no grid point at x3"):
        calibrate(points[:-1], shared, targets, "muse", params, meta, tmp_path / "c4.json")
    with pytest.raises(ValueError, match="no choice for seed 5"):
        C.chosen(rec, 5)
    # the reports: a row per seed and point, the seeds' multipliers side by side in the main table
    df = report.table([rec])
    assert list(df.columns) == report.COLUMNS and len(df) == 9
    assert list(df[df.chosen].seed) == [0, 1, 2] and list(df[df.chosen].scale) == [1.0, 0.3, 3.0]
    csv = tmp_path / "calibration.csv"
    df.to_csv(csv, index=False)
    picked = report.choices(csv)[("muse", "graddiff", "adam")]
    assert (picked["scale"], picked["status"]) == ("1/0.3/3", "not reached")
    assert "| adam | first | 2 | x3 | 0.3, 1, 3 | 12.0 | 40.0 | not reached, grid edge |" in report.markdown(csv)
    report.figure([rec], tmp_path / "cal.png")
    assert (tmp_path / "cal.png").stat().st_size > 0
    tidy = _tidy({(o, g, s): fu for o, g, fu in [("target", "reference", (96, 80)), ("adam", "first", (10, 70))]
                  for s in (0, 1, 2)})
    md = main_table_markdown(tidy, main_table(tidy, report.choices(csv)))
    assert "| graddiff / adam † | first | 1/0.3/3 | " in md and "each seed chose and ran, in seed order" in md


def test_each_seed_calibrates_the_seeds_its_entry_runs():
    cfg = default_config()
    cfg["calibration"]["seeds"] = "each"
    assert C.per_seed(cfg) and C.seeds(cfg) == [0, 1, 2] and C.seeds(cfg, [4, 3]) == [3, 4]
    cfg["calibration"]["seeds"] = [0]
    assert not C.per_seed(cfg) and C.seeds(cfg, [4, 3]) == [0]
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["calibration"]["seeds"] = "all"
    with pytest.raises(ConfigError, match="calibration"):
        validate(raw)


# ----------------------------------------------------------------------------------------- reports


def _choice(opt, grade, points, scale, reached, method="graddiff"):
    return {"benchmark": "muse", "method": method, "optimizer": opt, "grade": grade, "criterion": "match_retrain",
            "margin": 5.0, "forget_metric": "knowmem_f", "utility_metric": "knowmem_r", "retrain_forget": 13.9,
            "retrain_utility": 66.0, "target_forget": 96.5, "target_utility": 80.0, "threshold": 18.9,
            "scale": scale, "reached": reached, "gap": 0.0, "at_grid_edge": False,
            "points": [{**pt(s, f, u), "seeds": [0], "qualifies": f <= 18.9} for s, f, u in points]}


@pytest.fixture
def choices(tmp_path):
    recs = [_choice("adam", "first", [(0.3, 40, 90), (1, 10, 70)], 1.0, True),
            _choice("zo", "zeroth", [(1, 95, 80), (10, 60, 40)], 10.0, False)]
    paths = []
    for r in recs:
        p = tmp_path / f"{r['optimizer']}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    return paths


def test_calibration_table_and_figure(choices, tmp_path):
    df = report.report(choices, tmp_path / "calibration.csv", [f"muse={tmp_path / 'cal.png'}"])
    assert list(df.columns) == report.COLUMNS
    assert len(df) == 4
    chosen = df[df.chosen]
    assert list(chosen.optimizer) == ["adam", "zo"] and list(chosen.scale) == [1.0, 10.0]
    assert list(chosen.status) == ["reached", "not reached"]
    assert pd.read_csv(tmp_path / "calibration.csv").shape == df.shape
    assert (tmp_path / "cal.png").stat().st_size > 0 and (tmp_path / "cal.svg").exists()
    with pytest.raises(ValueError, match="no choices for benchmark 'wmdp'"):
        report.report(choices, None, [f"wmdp={tmp_path / 'w.png'}"])
    md = report.markdown(df)
    assert "| zo | zeroth | x10 | 1, 10 | 60.0 | 40.0 | not reached |" in md


def _tidy(values: dict) -> pd.DataFrame:
    rows = []
    for (opt, grade, seed), (f, u) in values.items():
        method = "none" if grade == "reference" else "graddiff"
        for metric, v in (("knowmem_f", f), ("knowmem_r", u)):
            for attack in ("none", "nf4"):
                rows.append({"benchmark": "muse", "method": method, "optimizer": opt, "grade": grade, "seed": seed,
                             "attack": attack, "metric": metric, "value": v + seed})
    return pd.DataFrame(rows)


def test_tables_and_findings_mark_a_choice_that_did_not_reach(choices, tmp_path):
    df = _tidy({(o, g, s): fu for o, g, fu in [("target", "reference", (96, 80)), ("retrain", "reference", (14, 66)),
                                               ("adam", "first", (10, 70)), ("zo", "zeroth", (60, 40))]
                for s in (0, 1, 2)})
    cal = report.table(report.load(choices))
    wide = main_table(df, report.choices(cal))
    assert dict(zip(wide.optimizer, wide.calibration)) == {"target": "", "retrain": "", "adam": "reached",
                                                            "zo": "not reached"}
    md = main_table_markdown(df, wide)
    assert "| graddiff / zo † | zeroth | 10 | " in md and "| graddiff / adam | first | 1 | " in md
    assert report.NOT_REACHED_NOTE in md
    optimizers = {"adam": {"type": "adam"}, "zo": {"type": "adazo"}}
    found = findings({"muse": df}, optimizers, {"graddiff": {"objective": "grad_diff"}}, "adam")
    text = findings_markdown({"muse": df}, found, calibration=cal)
    assert "## Learning rates (calibration)" in text
    assert "| muse / graddiff / knowmem_f / nf4 | zo † |" in text
    assert "with a side whose calibration was not reached" in text
