//! Why a Flyte 2 task ran again (docs/FLYTE.md, "Why a lookup missed",
//! Flyte 2): its cache key is a hash of the inputs' hash, the task's name,
//! its interface and its cache version (by default a hash of the
//! function's source) and is stored nowhere in a form this tool can
//! recompute. What can be known comes from its `runs` records, kept when
//! local persistence is on: each cached action's task name, inputs (as
//! JSON), and whether it was a cache hit. For each action that ran with the
//! cache on and missed, the nearest earlier action of the same task says
//! why, as far as it can: equal inputs mean the key changed for another
//! reason (the source, the interface, the version) or the entry was
//! removed; otherwise the inputs that differ are named.

use serde::Serialize;
use serde_json::Value as Json;

use super::flyte2::Flyte2Cache;
use crate::cache::Cache;
use crate::cache::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    /// No earlier cached action of the task is recorded.
    FirstRun,
    /// An earlier action had equal inputs: the key changed otherwise.
    InputsEqual,
    /// The nearest earlier action's inputs differ in the inputs named.
    InputsDiffer,
}

/// One input that differs between a run and an earlier one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunInputDifference {
    pub input: String,
    /// `value differs`, `only in this run`, `only in the earlier run`.
    pub how: &'static str,
}

/// An action recorded in `runs`.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedAction {
    pub run: String,
    pub action: String,
    pub start_time: f64,
}

/// Why one cached action missed.
#[derive(Clone, Debug, Serialize)]
pub struct RunExplanation {
    pub task: String,
    #[serde(flatten)]
    pub action: RecordedAction,
    pub verdict: RunVerdict,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<RecordedAction>,
    pub differs: Vec<RunInputDifference>,
}

struct Action {
    task: String,
    at: RecordedAction,
    inputs: serde_json::Map<String, Json>,
    hit: bool,
}

fn differences(
    this: &serde_json::Map<String, Json>,
    earlier: &serde_json::Map<String, Json>,
) -> Vec<RunInputDifference> {
    let mut out = Vec::new();
    for (name, value) in this {
        match earlier.get(name) {
            Some(v) if v == value => {}
            Some(_) => out.push(RunInputDifference { input: name.clone(), how: "value differs" }),
            None => out.push(RunInputDifference { input: name.clone(), how: "only in this run" }),
        }
    }
    for name in earlier.keys().filter(|n| !this.contains_key(*n)) {
        out.push(RunInputDifference { input: name.clone(), how: "only in the earlier run" });
    }
    out
}

/// Explains each recorded action that ran with the cache on and missed
/// (of `task` only, when given), oldest first.
pub fn explain_runs(cache: &Cache, task: Option<&str>) -> Result<Vec<RunExplanation>> {
    let mut actions: Vec<Action> = Flyte2Cache::new(cache)
        .runs()?
        .into_iter()
        .filter_map(|((run, action), record)| {
            // Only the actions of cached tasks: a run's `a0` has no inputs.
            if record.get("cache_enabled").and_then(Json::as_i64) != Some(1) {
                return None;
            }
            let inputs = record.get("inputs")?.as_object()?.clone();
            let task_name = record.get("task_name")?.as_str()?.to_string();
            let start_time = record.get("start_time").and_then(Json::as_f64).unwrap_or(0.0);
            let hit = record.get("cache_hit").and_then(Json::as_i64) == Some(1);
            Some(Action { task: task_name, at: RecordedAction { run, action, start_time }, inputs, hit })
        })
        .filter(|a| task.is_none_or(|t| a.task == t))
        .collect();
    actions.sort_by(|a, b| a.at.start_time.total_cmp(&b.at.start_time));
    let mut out = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        if a.hit {
            continue;
        }
        let earlier = actions[..i].iter().filter(|e| e.task == a.task);
        // The latest of those with the fewest differences.
        let nearest = earlier
            .map(|e| (differences(&a.inputs, &e.inputs), e))
            .min_by(|(d1, e1), (d2, e2)| d1.len().cmp(&d2.len()).then(e2.at.start_time.total_cmp(&e1.at.start_time)));
        let (verdict, reason, compared_with, differs) = match nearest {
            None => {
                (RunVerdict::FirstRun, "no earlier cached action of this task is recorded".to_string(), None, vec![])
            }
            Some((differs, e)) if differs.is_empty() => {
                let reason = format!(
                    "ran although action {}/{} had equal inputs: the cache key changed otherwise (the task's cache \
                     version, by default a hash of its source; its interface; its name) or that entry was removed",
                    e.at.run, e.at.action
                );
                (RunVerdict::InputsEqual, reason, Some(e.at.clone()), differs)
            }
            Some((differs, e)) => {
                let named: Vec<String> = differs.iter().map(|d| format!("{} ({})", d.input, d.how)).collect();
                let reason = format!(
                    "the inputs differ from the nearest earlier action's ({}/{}) in {}",
                    e.at.run,
                    e.at.action,
                    named.join(", ")
                );
                (RunVerdict::InputsDiffer, reason, Some(e.at.clone()), differs)
            }
        };
        out.push(RunExplanation {
            task: a.task.clone(),
            action: a.at.clone(),
            verdict,
            reason,
            compared_with,
            differs,
        });
    }
    Ok(out)
}
