//! Versioned flow definitions, and the check that a stored flow may be run by
//! one of them.
//!
//! Steps are matched by index when a flow resumes, so a flow must be resumed
//! by exactly the definition it was started under. Every flow stores its
//! definition's version ([`Flow::VERSION`]) and step names; a kind keeps its
//! earlier definitions runnable with [`Flow::legacy`] until their flows have
//! drained. At resume, the stored version picks the definition; its step
//! names must equal the stored ones, and every step record must name the step
//! of its index. Otherwise the flow is refused (the engine leaves it `stuck`,
//! with [`Mismatch`]'s message, its records untouched). Flows stored before
//! versions were are version 1, with the step names version 1 has now.

use std::sync::Arc;

use scoria_store::flows::{FlowRecord, StepRecord};

use crate::step::{Flow, Step};

/// One definition of a kind: a version and its steps.
pub(crate) struct Definition<F: Flow> {
    pub(crate) version: u32,
    pub(crate) steps: Arc<Vec<Step<F>>>,
    pub(crate) names: Arc<Vec<&'static str>>,
}

impl<F: Flow> Clone for Definition<F> {
    fn clone(&self) -> Self {
        Definition {
            version: self.version,
            steps: self.steps.clone(),
            names: self.names.clone(),
        }
    }
}

impl<F: Flow> Definition<F> {
    fn new(version: u32, steps: Vec<Step<F>>) -> Self {
        let names = Arc::new(steps.iter().map(|s| s.name).collect::<Vec<_>>());
        Definition {
            version,
            steps: Arc::new(steps),
            names,
        }
    }

    /// The current definition of `F` ([`Flow::VERSION`], [`Flow::steps`]).
    pub(crate) fn current() -> Self {
        Definition::new(F::VERSION, F::steps())
    }
}

/// Every definition of a kind this build can run, the current one first.
pub(crate) struct Definitions<F: Flow> {
    all: Vec<Definition<F>>,
}

/// Why a stored flow cannot be run by this build; renders as the message an
/// admin reads on the stuck flow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Mismatch(pub(crate) String);

impl<F: Flow> Definitions<F> {
    /// The definitions of `F`. Panics when two share a version, when one
    /// has no steps or when a definition names two steps alike: those are
    /// mistakes in the code, found by any test that registers the kind.
    pub(crate) fn of() -> Self {
        let mut all = vec![Definition::current()];
        all.extend(F::legacy().into_iter().map(|(v, s)| Definition::new(v, s)));
        for (i, d) in all.iter().enumerate() {
            assert!(
                !d.names.is_empty(),
                "flow {} v{} has no steps",
                F::KIND,
                d.version
            );
            assert!(
                all[..i].iter().all(|o| o.version != d.version),
                "flow {} defines version {} twice",
                F::KIND,
                d.version
            );
            for (j, n) in d.names.iter().enumerate() {
                assert!(
                    !d.names[..j].contains(n),
                    "flow {} v{} names two steps {n}",
                    F::KIND,
                    d.version
                );
            }
        }
        Definitions { all }
    }

    /// The definition that runs the stored flow `rec` with step records
    /// `steps`, or why there is none.
    pub(crate) fn for_flow(
        &self,
        rec: &FlowRecord,
        steps: &[StepRecord],
    ) -> Result<&Definition<F>, Mismatch> {
        let version = rec.definition_version.unwrap_or(1);
        let stored = match &rec.step_names {
            Some(names) => format!("[{}]", names.join(", ")),
            None => "(step names not recorded)".to_owned(),
        };
        let refuse = |why: String| {
            Mismatch(format!(
                "flow {} was started by definition {} v{version} {stored}{why}; this build has {}",
                rec.id,
                F::KIND,
                self.describe()
            ))
        };
        let Some(def) = u32::try_from(version)
            .ok()
            .and_then(|v| self.all.iter().find(|d| d.version == v))
        else {
            return Err(refuse(String::new()));
        };
        if let Some(names) = &rec.step_names
            && !names
                .iter()
                .map(String::as_str)
                .eq(def.names.iter().copied())
        {
            return Err(refuse(String::new()));
        }
        for r in steps {
            let expected = usize::try_from(r.idx).ok().and_then(|i| def.names.get(i));
            if expected != Some(&r.name.as_str()) {
                return Err(refuse(format!(
                    ", and its step {} is recorded as {}",
                    r.idx, r.name
                )));
            }
        }
        Ok(def)
    }

    /// `v2 [a, b, c], v1 [a, c]`.
    fn describe(&self) -> String {
        self.all
            .iter()
            .map(|d| format!("v{} [{}]", d.version, d.names.join(", ")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use scoria_model::FlowId;
    use scoria_model::flow::{FlowState, StepState};
    use serde_json::Value;

    use super::*;
    use crate::FlowMeta;

    struct K;

    fn noop(name: &'static str) -> Step<K> {
        Step::db(name, |_, _| Box::pin(async { Ok(Value::Null) }))
    }

    impl Flow for K {
        const KIND: &'static str = "k";
        const VERSION: u32 = 2;
        type Params = ();
        type Env = ();

        fn steps() -> Vec<Step<Self>> {
            vec![noop("a"), noop("b2"), noop("c")]
        }

        fn legacy() -> Vec<(u32, Vec<Step<Self>>)> {
            vec![(1, vec![noop("a"), noop("b"), noop("c")])]
        }

        fn meta(_: &()) -> FlowMeta {
            FlowMeta::default()
        }
    }

    fn record(version: Option<i64>, names: Option<&[&str]>) -> FlowRecord {
        FlowRecord {
            id: FlowId::new(),
            kind: "k".into(),
            resource_type: None,
            resource_id: None,
            project_id: None,
            params: Value::Null,
            state: FlowState::Running,
            steps_total: 3,
            step_index: 1,
            step_name: None,
            percent: None,
            failed_step: None,
            last_error: None,
            created_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
            definition_version: version,
            step_names: names.map(|n| n.iter().map(|s| s.to_string()).collect()),
            owner: None,
            lease_expires_at: None,
            generation: 0,
        }
    }

    fn step(idx: i64, name: &str) -> StepRecord {
        StepRecord {
            idx,
            name: name.into(),
            state: StepState::Done,
            attempts: 1,
            output: None,
            error: None,
        }
    }

    #[test]
    fn the_stored_version_picks_the_definition() {
        let defs = Definitions::<K>::of();
        let v1 = record(Some(1), Some(&["a", "b", "c"]));
        assert_eq!(defs.for_flow(&v1, &[step(0, "a")]).unwrap().version, 1);
        let v2 = record(Some(2), Some(&["a", "b2", "c"]));
        assert_eq!(defs.for_flow(&v2, &[step(1, "b2")]).unwrap().version, 2);
    }

    #[test]
    fn a_flow_stored_before_versions_is_version_1_checked_by_its_records() {
        let defs = Definitions::<K>::of();
        let old = record(None, None);
        assert_eq!(
            defs.for_flow(&old, &[step(0, "a"), step(1, "b")])
                .unwrap()
                .version,
            1
        );
        let err = defs
            .for_flow(&old, &[step(0, "a"), step(1, "b2")])
            .err()
            .unwrap();
        assert_eq!(
            err.0,
            format!(
                "flow {} was started by definition k v1 (step names not recorded), and its step 1 is recorded as b2; this build has v2 [a, b2, c], v1 [a, b, c]",
                old.id
            )
        );
    }

    #[test]
    fn an_unknown_version_or_other_names_are_refused_with_both_definitions() {
        let defs = Definitions::<K>::of();
        let v3 = record(Some(3), Some(&["a", "z"]));
        assert_eq!(
            defs.for_flow(&v3, &[]).err().unwrap().0,
            format!(
                "flow {} was started by definition k v3 [a, z]; this build has v2 [a, b2, c], v1 [a, b, c]",
                v3.id
            )
        );
        // Same version, other steps: the code changed without a new version.
        let renamed = record(Some(1), Some(&["a", "bb", "c"]));
        assert!(defs.for_flow(&renamed, &[]).is_err());
        let beyond = record(Some(1), Some(&["a", "b", "c"]));
        assert!(defs.for_flow(&beyond, &[step(3, "d")]).is_err());
    }
}
