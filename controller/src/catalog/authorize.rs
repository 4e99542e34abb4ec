//! Who may apply which definitions: the rules of `crate::access` for
//! projects and shared pipelines, with what the applying transaction
//! reads of which project runs which pipeline.

use ick_api::controller::DefinitionKind;
use ick_definitions::files::Spec;

use super::Item;
use crate::access::{self, Bindings, Identity};
use crate::store::definitions::DefRow;

/// The projects that run `pipeline`, as stored.
pub(super) fn users_of<'a>(
    runs: &'a [(String, String)],
    pipeline: &str,
) -> impl Iterator<Item = &'a String> {
    runs.iter()
        .filter(move |(_, p)| p == pipeline)
        .map(|(project, _)| project)
}

/// Whether `who` may read a stored pipeline.
pub(super) fn readable(
    bindings: &Bindings,
    who: &Identity<'_>,
    pipeline: &str,
    runs: &[(String, String)],
) -> bool {
    let users: Vec<String> = users_of(runs, pipeline).cloned().collect();
    bindings.may_read_pipeline(who, &users)
}

/// Why `who` may not apply `items`: one sentence per definition refused.
/// A definition that would not change needs only to be readable; a
/// project the author may not see is refused as a new one would be, so
/// that the refusal does not tell it the project exists.
pub(super) fn authorize(
    bindings: &Bindings,
    who: &Identity<'_>,
    items: &[Item],
    current: &[Option<DefRow>],
    specs: &[String],
    runs: &[(String, String)],
) -> Vec<String> {
    let mut refused = Vec::new();
    let cannot_create = |name: &str| {
        if bindings.may_create_projects(who) {
            format!(
                "{} may not create project {name:?}: the name is taken",
                who.describe()
            )
        } else {
            format!(
                "{} may not create project {name:?}: that needs the global role creator",
                who.describe()
            )
        }
    };
    // Projects this batch creates: their author will own them.
    let created: Vec<&str> = items
        .iter()
        .zip(current)
        .filter(|(i, c)| i.kind == DefinitionKind::Project && c.is_none())
        .map(|(i, _)| i.name.as_str())
        .collect();
    for ((item, current), spec) in items.iter().zip(current).zip(specs) {
        let unchanged = current.as_ref().is_some_and(|c| &c.spec == spec);
        match item.kind {
            DefinitionKind::Project => {
                if current.is_none() {
                    if !bindings.may_create_projects(who) {
                        refused.push(cannot_create(&item.name));
                    }
                    continue;
                }
                if !bindings.may_read(who, &item.name) {
                    refused.push(cannot_create(&item.name));
                    continue;
                }
                if unchanged {
                    continue;
                }
                if let Err(e) = access::judge::<access::ChangeDefinitions>(
                    bindings,
                    who,
                    &item.name,
                    String::new,
                ) {
                    refused.push(e.to_string());
                }
            }
            DefinitionKind::Pipeline => {
                // Those that run it now, and those of the batch that will.
                let mut users: Vec<String> = users_of(runs, &item.name).cloned().collect();
                for other in items {
                    if let Spec::Project(p) = &other.spec
                        && p.pipelines.contains(&item.name)
                    {
                        users.push(other.name.clone());
                    }
                }
                users.retain(|u| !created.contains(&u.as_str()));
                users.sort();
                users.dedup();
                if unchanged {
                    if !bindings.may_read_pipeline(who, &users) {
                        refused.push(access::pipeline_refusal(
                            who,
                            &item.name,
                            access::PipelineRefusal::Unused,
                        ));
                    }
                    continue;
                }
                if let Err(why) = bindings.may_change_pipeline(who, &users) {
                    refused.push(access::pipeline_refusal(who, &item.name, why));
                }
            }
        }
    }
    refused
}
