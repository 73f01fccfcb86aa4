"""The weekly email as built from known figures: every number and link checked by hand."""

from __future__ import annotations

import re
from dataclasses import replace

from api.reports.weekly import build_weekly_report, change, one_line, view
from tests.reports.example import BASE, EMPTY, HELD, OVERSIZED, PATTERN, inputs


def test_headline_figures_and_week_over_week_change() -> None:
    email = build_weekly_report(inputs())
    assert email.subject == "inferwatch weekly: $10,000 on GPUs, $2,500 idle (23–29 Mar 2026)"
    text = email.text
    # 10,000 vs 8,000 and 2,500 vs 2,000: both +25 %.
    assert "GPU spend this week:   $10,000 (▲ 25% vs last week ($8,000)), 4,000 GPU-hours" in text
    assert (
        "Spent on idle GPUs:    $2,500 (▲ 25% vs last week ($2,000)), 25% of spend, 1,000 idle GPU-hours"
        in text
    )
    assert "▲ 25% vs last week ($8,000)" in email.html


def test_waste_by_cause_sums_the_findings_per_kind_without_double_counting_patterns() -> None:
    v = view(inputs())
    causes = {c.kind: (c.findings, c.usd, c.added) for c in v.causes}
    assert causes == {
        "idle_held": (1, "$1,340", True),
        "idle_pattern": (1, "$900", False),
        "fleet_oversized": (1, "$612", True),
        "idle_empty": (1, "$50", True),  # acknowledged, but its dollars still count
    }
    # 1,340 + 612.40 + 50 (the 900 of the pattern is inside the 1,340 already); the cost finding is apart.
    assert v.savings_total == "$2,002"
    assert v.capacity_cost == "$574"
    assert re.search(r"Savings found\s+\$2,002/week", build_weekly_report(inputs()).text)


def test_top_findings_are_the_largest_unmuted_with_their_one_line_fix_and_link() -> None:
    v = view(inputs(top_n=3))
    assert [(r.title, r.money) for r in v.top] == [
        (HELD.title, "save $1,340/week"),
        (PATTERN.title, "save $900/week"),
        (OVERSIZED.title, "save $612/week"),
    ]
    assert v.top[0].fix == "Scale the deployment down in idle periods."
    assert v.top[0].link == f"{BASE}/findings/{HELD.fingerprint}"
    assert (v.more_findings, v.muted_count) == (2, 1)  # undersized and speculative left; idle_empty muted
    assert EMPTY.title not in build_weekly_report(inputs(top_n=50)).text.split("TOP FINDINGS")[1]


def test_daily_idle_bars_scale_to_the_worst_day() -> None:
    email = build_weekly_report(inputs())
    # Peak 500: Monday's 100 is a fifth of the bar.
    assert [d.bar_pct for d in view(inputs()).days] == [20, 40, 60, 80, 100, 100, 100]
    assert 'width="20%" height="14" bgcolor="#e4572e"' in email.html
    assert re.search(r"Mon 23 Mar\s+#####\s+\$100 of \$1,000 \(10%\)", email.text)
    assert re.search(r"Sun 29 Mar\s+#########################\s+\$500 of \$1,500 \(33%\)", email.text)


def test_html_is_escaped_and_the_text_part_is_not() -> None:
    email = build_weekly_report(inputs())
    assert "chat &lt;prod&gt; &amp; co" in email.html and "chat <prod> & co" not in email.html
    assert "chat <prod> & co" in email.text and "&amp;" not in email.text


def test_links_point_at_the_dashboard() -> None:
    email = build_weekly_report(inputs())
    hrefs = set(re.findall(r'href="([^"]+)"', email.html))
    expected = {f"{BASE}/", f"{BASE}/findings", f"{BASE}/fleet", f"{BASE}/settings/report"} | {
        f"{BASE}/findings/{f.fingerprint}" for f in (HELD, PATTERN, OVERSIZED)
    }
    assert hrefs == expected
    assert set(email.links) == expected
    for link in expected - {f"{BASE}/fleet"}:
        assert link in email.text


def test_a_first_week_and_an_empty_week_read_sensibly() -> None:
    base = inputs()
    empty = replace(
        base.this_week, spend_usd=0.0, idle_usd=0.0, gpu_hours=0.0, idle_gpu_hours=0.0, days=(), findings=()
    )
    email = build_weekly_report(replace(base, this_week=empty, last_week=None))
    assert "no figures for last week" in email.text
    assert "No GPU reported this week." in email.text and "Nothing to fix this week." in email.text
    assert "No finding this week points at money to save." in email.html


def test_change_and_one_line_helpers() -> None:
    assert change(90.0, 100.0).text == "▼ 10% vs last week ($100)"
    assert change(100.0, 100.2).text == "no change vs last week"
    assert change(5.0, 0.0).text == "new this week"
    assert one_line("Do this. Then that.") == "Do this."
    assert one_line("x" * 300).endswith("…") and len(one_line("x" * 300)) == 180
