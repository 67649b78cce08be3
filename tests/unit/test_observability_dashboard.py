"""The Grafana dashboard in docs/ queries only metrics the server exports (estimates included), and /metrics
exports the router's totals as they are in ``router.stats()``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from langchain_slm_router.savings import RouterStats, SavingsEstimate, TokenTotals
from langchain_slm_router.server.metrics import ServerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "slm-router-dashboard.json"

STATS = RouterStats(
    queries=5, answered=4, failed={"FallbackUnavailableError": 1}, by_stage={"math": 2, "slm": 1, "llm": 1},
    llm_calls=2, llm_calls_avoided=3, escalations={"gate": 1}, tokens={"m": TokenTotals(input_tokens=7,
                                                                                          output_tokens=3, calls=1)},
    time_ms={"math": 4.0, "llm": 1500.0, "total": 1600.0},
    savings=SavingsEstimate(cost_actual=0.5, cost_always_llm=2.0, cost_saved=1.5, time_always_llm_ms=4000.0,
                            time_actual_ms=1600.0, time_saved_ms=2400.0),
)


def test_metrics_export_the_router_totals_and_the_dashboard_uses_only_exported_names() -> None:
    metrics = ServerMetrics()
    metrics.watch_router(lambda: STATS)
    text = metrics.render()[0].decode()
    for line in ('slm_router_tokens_total{direction="input",model="m"} 7.0',
                 'slm_router_stage_time_seconds_total{stage="llm"} 1.5', "slm_router_llm_calls_total 2.0",
                 'slm_router_failed_queries_total{type="FallbackUnavailableError"} 1.0',
                 "slm_router_estimated_cost_saved 1.5", "slm_router_estimated_time_saved_seconds 2.4"):
        assert line in text, line
    exported = set(re.findall(r"^# TYPE (\w+)", text, re.M))
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bslm_router_\w+", e)}
    assert len(dashboard["panels"]) >= 10 and used and used <= exported, used - exported
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


def test_no_estimate_means_no_estimate_gauges() -> None:
    metrics = ServerMetrics()
    metrics.watch_router(lambda: RouterStats())
    text = metrics.render()[0].decode()
    assert "slm_router_estimated_cost_actual 0.0" in text and "slm_router_estimated_cost_saved" not in text
