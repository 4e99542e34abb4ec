//! The build graph: what a trigger turns a project into. One node per
//! action; an action depends on the one before it in its pipeline, and a
//! pipeline's first action on the last action of each pipeline it needs.
//! Computed once, stored with the build, never changed afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ick_api::actions::Action;
use ick_api::controller::{PipelineSpec, ProjectSpec};
use ick_api::params::{WEBHOOK_PARAMETERS, check_parameter};
use serde_json::Value;

use ick_definitions::check_project_graph;
use ick_definitions::refs::{BuildValues, expand_action};

/// One action of a build.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    /// Its pipeline.
    pub pipeline: String,
    /// Its position in the pipeline.
    pub index: u32,
    /// The pipeline's length.
    pub pipeline_len: u32,
    /// What it runs.
    pub action: Action,
    /// The nodes (indices in the graph) it depends on.
    pub deps: Vec<usize>,
}

/// Expands `project` into its graph, pipelines ordered so that each comes
/// after those it needs (otherwise in the project's order).
pub fn build_graph(
    project: &ProjectSpec,
    pipelines: &BTreeMap<String, PipelineSpec>,
) -> Result<Vec<GraphNode>, String> {
    check_project_graph(project, pipelines)?;
    let order = pipeline_order(project, pipelines);
    let mut nodes: Vec<GraphNode> = Vec::new();
    let mut last_of: HashMap<&str, usize> = HashMap::new();
    for name in order {
        let spec = &pipelines[name];
        let len = spec.actions.len() as u32;
        for (i, action) in spec.actions.iter().enumerate() {
            let deps = if i == 0 {
                spec.needs
                    .iter()
                    .filter_map(|n| last_of.get(n.as_str()).copied())
                    .collect()
            } else {
                vec![nodes.len() - 1]
            };
            nodes.push(GraphNode {
                pipeline: name.to_string(),
                index: i as u32,
                pipeline_len: len,
                action: action.clone(),
                deps,
            });
        }
        last_of.insert(name, nodes.len() - 1);
    }
    Ok(nodes)
}

/// Fills the build's values into the refs of its actions (`{number}`, …):
/// checked at apply, they fail here only for a definition stored before.
pub fn fill_refs(graph: &mut [GraphNode], project: &str, number: i64) -> Result<(), String> {
    for node in graph {
        let values = BuildValues {
            project,
            number,
            pipeline: &node.pipeline,
        };
        expand_action(&mut node.action, &values)
            .map_err(|e| format!("pipeline {}: {e}", node.pipeline))?;
    }
    Ok(())
}

/// The project's pipelines in an order where each follows its needs; ties
/// keep the project's order. The graph was checked for cycles.
fn pipeline_order<'a>(
    project: &'a ProjectSpec,
    pipelines: &BTreeMap<String, PipelineSpec>,
) -> Vec<&'a str> {
    let mut placed: Vec<&str> = Vec::new();
    while placed.len() < project.pipelines.len() {
        let next = project.pipelines.iter().find(|p| {
            !placed.contains(&p.as_str())
                && pipelines[*p]
                    .needs
                    .iter()
                    .all(|n| placed.contains(&n.as_str()))
        });
        match next {
            Some(p) => placed.push(p),
            None => break,
        }
    }
    placed
}

/// The parameters a build gets: the project's defaults, then the trigger's
/// overrides. A trigger may set only what the project or its pipelines
/// declare (and what webhooks set), never a reserved name; every parameter
/// a pipeline declares must have a value.
pub fn build_parameters(
    project: &ProjectSpec,
    pipelines: &BTreeMap<String, PipelineSpec>,
    overrides: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, String> {
    let mut declared: BTreeSet<&str> = project.parameters.keys().map(String::as_str).collect();
    for spec in project.pipelines.iter().filter_map(|p| pipelines.get(p)) {
        declared.extend(spec.parameters.iter().map(String::as_str));
    }
    declared.extend(WEBHOOK_PARAMETERS);
    let mut parameters = project.parameters.clone();
    for (key, value) in overrides {
        check_parameter(key)?;
        if !declared.contains(key.as_str()) {
            return Err(format!(
                "project {:?} has no parameter {key:?}: it takes {}",
                project.name.as_deref().unwrap_or_default(),
                declared.iter().copied().collect::<Vec<_>>().join(", ")
            ));
        }
        parameters.insert(key.clone(), value.clone());
    }
    let mut missing = Vec::new();
    for p in &project.pipelines {
        if let Some(spec) = pipelines.get(p) {
            for wanted in &spec.parameters {
                if parameters.get(wanted).is_none_or(Value::is_null) {
                    missing.push(format!("{wanted} (pipeline {p})"));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(parameters)
    } else {
        Err(format!(
            "these parameters have no value: {}; give them in the project's parameters or the trigger",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ick_definitions::{parse_pipeline, parse_project};

    fn setup(
        defs: &[(&str, &str)],
        project: &str,
    ) -> (ProjectSpec, BTreeMap<String, PipelineSpec>) {
        let pipelines = defs
            .iter()
            .map(|(name, text)| {
                (
                    name.to_string(),
                    parse_pipeline(text, name).expect("pipeline"),
                )
            })
            .collect();
        (parse_project(project, "p").expect("project"), pipelines)
    }

    #[test]
    fn a_diamond_orders_pipelines_and_links_first_to_last_actions() {
        let (project, pipelines) = setup(
            &[
                ("top", "actions: [{shell: a}, {shell: b}]"),
                ("left", "needs: [top]\nactions: [{shell: c}]"),
                ("right", "needs: [top]\nactions: [{shell: d}, {shell: e}]"),
                ("bottom", "needs: [left, right]\nactions: [{shell: f}]"),
            ],
            "pipelines: [bottom, right, left, top]",
        );
        let graph = build_graph(&project, &pipelines).expect("graph");
        let names: Vec<(&str, u32)> = graph
            .iter()
            .map(|n| (n.pipeline.as_str(), n.index))
            .collect();
        assert_eq!(
            names,
            vec![
                ("top", 0),
                ("top", 1),
                ("right", 0),
                ("right", 1),
                ("left", 0),
                ("bottom", 0)
            ]
        );
        let deps: Vec<Vec<usize>> = graph.iter().map(|n| n.deps.clone()).collect();
        assert_eq!(
            deps,
            vec![vec![], vec![0], vec![1], vec![2], vec![1], vec![4, 3]]
        );
        assert_eq!(graph[3].pipeline_len, 2);
    }

    #[test]
    fn independent_pipelines_have_no_edges_between_them() {
        let (project, pipelines) = setup(
            &[
                ("a", "actions: [{shell: a}]"),
                ("b", "actions: [{shell: b}]"),
            ],
            "pipelines: [a, b]",
        );
        let graph = build_graph(&project, &pipelines).expect("graph");
        assert!(graph.iter().all(|n| n.deps.is_empty()));
    }

    #[test]
    fn parameters_merge_defaults_and_overrides_and_must_cover_declared_ones() {
        let (project, pipelines) = setup(
            &[("a", "parameters: [git_url, git_ref]\nactions: [{shell: a}]")],
            "parameters: {git_url: u}\npipelines: [a]",
        );
        let err = build_parameters(&project, &pipelines, &BTreeMap::new()).expect_err("refused");
        assert!(err.contains("git_ref (pipeline a)"), "{err}");
        let overrides = BTreeMap::from([("git_ref".to_string(), Value::from("main"))]);
        let params = build_parameters(&project, &pipelines, &overrides).expect("complete");
        assert_eq!(params["git_url"], "u");
        assert_eq!(params["git_ref"], "main");
        let bad = BTreeMap::from([("no-dash".to_string(), Value::from(1))]);
        assert!(build_parameters(&project, &pipelines, &bad).is_err());
        for name in [
            "nosuch",
            "LD_PRELOAD",
            "BASH_ENV",
            "GIT_SSH_COMMAND",
            "PATH",
        ] {
            let bad = BTreeMap::from([(name.to_string(), Value::from("/tmp/x"))]);
            let err = build_parameters(&project, &pipelines, &bad).expect_err(name);
            assert!(
                err.contains("reserved") || err.contains("it takes git_commit, git_ref, git_url"),
                "{name}: {err}"
            );
        }
        let webhook = BTreeMap::from([("git_commit".to_string(), Value::from("abc"))]);
        assert!(
            build_parameters(&project, &pipelines, &webhook).is_err_and(|e| e.contains("git_ref"))
        );
    }
}
