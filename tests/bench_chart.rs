//! scripts/bench-chart.py, the SVG chart scripts/bench.sh writes beside its
//! JSON: for every docs/bench-results-*.json the chart is well-formed XML
//! (parsed by python3's ElementTree) and has one row per result, in order,
//! each named after its scenario and flows, with a rate bar; the committed
//! charts are what the generator makes of their JSON. Needs python3 (the
//! README test command installs it); no DPDK.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses `svg` with ElementTree (an error if it is not well-formed) and
/// returns, per `<g class="scenario">`, its scenario, its first text and
/// how many rate bars it has.
fn parse(svg: &Path) -> Vec<(String, String, usize)> {
    const CHECK: &str = r#"
import json, sys, xml.etree.ElementTree as ET
NS = "{http://www.w3.org/2000/svg}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == NS + "svg", root.tag
rows = []
for g in root.iter(NS + "g"):
    if g.get("class") != "scenario":
        continue
    texts = [t.text for t in g.iter(NS + "text")]
    bars = [r for r in g.iter(NS + "rect") if r.get("class") == "rate"]
    rows.append([g.get("data-scenario"), texts[0], len(bars)])
print(json.dumps(rows))
"#;
    let out = Command::new("python3")
        .args(["-c", CHECK])
        .arg(svg)
        .output()
        .expect("python3 not found (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{} is not well-formed: {}",
        svg.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<(String, String, usize)>>(&out.stdout).unwrap()
}

fn flows_text(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}K", n / 1000),
        n => n.to_string(),
    }
}

#[test]
fn bench_chart_is_well_formed_and_shows_every_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut committed = 0;
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("bench-results-") && name.ends_with(".json")) {
            continue;
        }
        let svg = dir.path().join(name.replace(".json", ".svg"));
        let out = Command::new("python3")
            .arg(root().join("scripts/bench-chart.py"))
            .arg(&path)
            .arg(&svg)
            .output()
            .expect("python3 not found (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let results = doc["results"].as_array().unwrap();
        let rows = parse(&svg);
        assert_eq!(rows.len(), results.len(), "{name}: {rows:?}");
        for (row, r) in rows.iter().zip(results) {
            let scenario = r["scenario"].as_str().unwrap();
            let label = format!("{scenario} {}", flows_text(r["flows"].as_u64().unwrap()));
            assert_eq!(row, &(scenario.to_string(), label, 1), "{name}");
        }
        let text = std::fs::read_to_string(&svg).unwrap();
        let limit = doc["limit"]["forwarded_mpps"].as_f64().unwrap();
        assert!(
            text.contains(&format!("limit {limit:.2} Mpps")),
            "{name}: no limit"
        );
        assert!(text.contains("class=\"limit\""), "{name}: no limit line");
        // A committed chart is the generator's picture of its JSON.
        let beside = path.with_extension("svg");
        if beside.exists() {
            assert_eq!(
                std::fs::read_to_string(&beside).unwrap(),
                text,
                "{} is not what scripts/bench-chart.py makes of {name}",
                beside.display()
            );
            committed += 1;
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} bench results found");
    assert!(committed >= 1, "no committed bench chart");
}
