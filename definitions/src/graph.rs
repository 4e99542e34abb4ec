//! Definitions among each other: a project and the pipelines it runs,
//! pipelines and the ones they need.

use std::collections::{BTreeMap, HashMap};

use ick_api::controller::{PipelineSpec, ProjectSpec};

/// Checks a project against the pipelines it names: each exists, each
/// pipeline's `needs:` are in the project, and the needs have no cycle.
pub fn check_project_graph(
    project: &ProjectSpec,
    pipelines: &BTreeMap<String, PipelineSpec>,
) -> std::result::Result<(), String> {
    let name = project.name.as_deref().unwrap_or("?");
    let unknown: Vec<&str> = project
        .pipelines
        .iter()
        .filter(|p| !pipelines.contains_key(*p))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "project {name:?} names unknown pipeline{} {}: apply {} first",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            if unknown.len() == 1 { "it" } else { "them" }
        ));
    }
    for p in &project.pipelines {
        for need in &pipelines[p].needs {
            if !project.pipelines.contains(need) {
                return Err(format!(
                    "pipeline {p:?} needs {need:?}, which project {name:?} does not run"
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(project, pipelines) {
        return Err(format!("needs: cycle {}", cycle.join(" → ")));
    }
    Ok(())
}

/// A `needs:` cycle among the project's pipelines, as the list of names
/// from a pipeline back to itself.
pub fn find_cycle(
    project: &ProjectSpec,
    pipelines: &BTreeMap<String, PipelineSpec>,
) -> Option<Vec<String>> {
    needs_cycle(pipelines, &project.pipelines)
}

/// A `needs:` cycle reachable from `starts` among `pipelines` (all that
/// are stored, whatever project runs them), as the list of names from a
/// pipeline back to itself. A need that is not in `pipelines` ends a path.
pub fn needs_cycle<'a>(
    pipelines: &BTreeMap<String, PipelineSpec>,
    starts: impl IntoIterator<Item = &'a String>,
) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        p: &str,
        pipelines: &BTreeMap<String, PipelineSpec>,
        marks: &mut HashMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(p).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::OnPath => {
                let start = path.iter().position(|q| q == p).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(p.to_string());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(p.to_string(), Mark::OnPath);
        path.push(p.to_string());
        if let Some(spec) = pipelines.get(p) {
            for need in &spec.needs {
                if let Some(cycle) = visit(need, pipelines, marks, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        marks.insert(p.to_string(), Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for p in starts {
        let mut path = Vec::new();
        if let Some(cycle) = visit(p, pipelines, &mut marks, &mut path) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_project;

    fn pipelines(needs: &[(&str, &[&str])]) -> BTreeMap<String, PipelineSpec> {
        needs
            .iter()
            .map(|(name, needs)| {
                (
                    name.to_string(),
                    PipelineSpec {
                        name: Some(name.to_string()),
                        parameters: vec![],
                        needs: needs.iter().map(|n| n.to_string()).collect(),
                        actions: vec![ick_api::actions::Action::shell("true")],
                    },
                )
            })
            .collect()
    }

    fn project(names: &[&str]) -> ProjectSpec {
        parse_project(&format!("pipelines: [{}]", names.join(", ")), "p").expect("project")
    }

    #[test]
    fn a_needs_cycle_is_named() {
        let all = pipelines(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let err = check_project_graph(&project(&["d", "a", "b", "c"]), &all).expect_err("refused");
        assert_eq!(err, "needs: cycle a → c → b → a");
    }

    #[test]
    fn a_cycle_among_stored_pipelines_is_found_from_any_of_them() {
        let all = pipelines(&[("a", &["b"]), ("b", &["x", "a"]), ("c", &[])]);
        let cycle = needs_cycle(&all, &["b".to_string()]).expect("a cycle");
        assert_eq!(cycle, ["b", "a", "b"]);
        assert_eq!(needs_cycle(&all, &["c".to_string()]), None);
    }

    #[test]
    fn unknown_and_outside_pipelines_are_refused() {
        let all = pipelines(&[("a", &[]), ("b", &["a"])]);
        let err = check_project_graph(&project(&["a", "x", "y"]), &all).expect_err("refused");
        assert!(err.contains("unknown pipelines \"x\", \"y\""), "{err}");
        let err = check_project_graph(&project(&["b"]), &all).expect_err("refused");
        assert!(err.contains("\"b\" needs \"a\""), "{err}");
        assert!(check_project_graph(&project(&["b", "a"]), &all).is_ok());
    }
}
