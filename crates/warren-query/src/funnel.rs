//! The funnel one person's events make, in plain Rust: what the
//! `warren_funnel` aggregate runs inside DataFusion, and what any backend
//! without such an aggregate can run over a person's events fetched in
//! time order. Written here rather than taken from a library because no
//! crate implements PostHog's funnel semantics.

use crate::plan::{Attribution, FunnelOrder, FunnelSpec};

/// One event as the funnel sees it: bit `i` of `mask` when it matches step
/// `i`, bit `32 + j` when it matches exclusion `j`.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelEvent {
    pub timestamp_us: i64,
    pub mask: u64,
    pub breakdown: Option<String>,
}

/// The path a person took: the time of each step reached, in step order.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelPath {
    pub times: Vec<i64>,
    pub breakdown: Option<String>,
}

#[derive(Debug, Clone)]
struct Partial {
    times: Vec<i64>,
    values: Vec<Option<String>>,
}

impl Partial {
    fn start(event: &FunnelEvent) -> Self {
        Self { times: vec![event.timestamp_us], values: vec![event.breakdown.clone()] }
    }

    fn extended(&self, event: &FunnelEvent) -> Self {
        let mut next = self.clone();
        next.times.push(event.timestamp_us);
        next.values.push(event.breakdown.clone());
        next
    }

    fn first(&self) -> i64 {
        self.times[0]
    }

    fn last(&self) -> i64 {
        self.times[self.times.len() - 1]
    }
}

const EXCLUSION_BIT: u32 = 32;

fn matches(event: &FunnelEvent, step: usize) -> bool {
    step < 32 && event.mask & (1 << step) != 0
}

fn excluded_by(event: &FunnelEvent, exclusion: usize) -> bool {
    event.mask & (1u64 << (EXCLUSION_BIT as usize + exclusion)) != 0
}

/// The person's path, or `None` when they never did the first step or an
/// exclusion dropped them. `events` are sorted here: by time, and among
/// equal times by their first step, so simultaneous steps count in order.
pub fn evaluate(spec: &FunnelSpec, events: &mut [FunnelEvent]) -> Option<FunnelPath> {
    events.sort_by_key(|e| (e.timestamp_us, (e.mask as u32).trailing_zeros()));
    let (best, excluded) = match spec.order {
        FunnelOrder::Ordered => ordered(spec, events),
        FunnelOrder::Strict => strict(spec, events),
        FunnelOrder::Unordered => unordered(spec, events),
    };
    if excluded {
        return None;
    }
    let best = best?;
    let breakdown = match spec.attribution {
        Attribution::FirstTouch | Attribution::AllEvents => best.values[0].clone(),
        Attribution::LastTouch => best.values[best.values.len() - 1].clone(),
        Attribution::Step(step) => best.values.get(step).cloned().flatten(),
    };
    Some(FunnelPath { times: best.times, breakdown })
}

/// Other events may come between steps. Per step, the partial path that
/// reached it with the latest start is kept: it has the most window left.
fn ordered(spec: &FunnelSpec, events: &[FunnelEvent]) -> (Option<Partial>, bool) {
    let n = spec.steps;
    let mut reached: Vec<Option<Partial>> = vec![None; n];
    let mut best: Option<Partial> = None;
    let mut excluded = false;
    for event in events {
        for (j, &(from, to)) in spec.exclusions.iter().enumerate() {
            if !excluded_by(event, j) {
                continue;
            }
            // A path that already got past `to` is not affected.
            let passed: Vec<i64> = reached[to.min(n)..].iter().flatten().map(Partial::first).collect();
            for slot in reached.iter_mut().take(to.min(n)).skip(from) {
                if let Some(path) = slot {
                    if event.timestamp_us - path.first() <= spec.window_us && !passed.contains(&path.first())
                    {
                        *slot = None;
                        excluded = true;
                    }
                }
            }
        }
        // Highest step first, so one event never serves two steps.
        for step in (0..n).rev() {
            if !matches(event, step) {
                continue;
            }
            if step == 0 {
                reached[0] = Some(Partial::start(event));
                continue;
            }
            let Some(previous) = &reached[step - 1] else { continue };
            if event.timestamp_us - previous.first() > spec.window_us || event.timestamp_us < previous.last()
            {
                continue;
            }
            let candidate = previous.extended(event);
            let better = match &reached[step] {
                Some(current) => candidate.first() >= current.first(),
                None => true,
            };
            if better {
                reached[step] = Some(candidate);
            }
        }
        note_best(&mut best, &reached);
    }
    (best, excluded)
}

fn note_best(best: &mut Option<Partial>, reached: &[Option<Partial>]) {
    if let Some(furthest) = reached.iter().rev().flatten().next() {
        if best.as_ref().is_none_or(|b| furthest.times.len() > b.times.len()) {
            *best = Some(furthest.clone());
        }
    }
}

/// Any event between steps breaks the path, so at most one is alive: the
/// one the previous event extended.
fn strict(spec: &FunnelSpec, events: &[FunnelEvent]) -> (Option<Partial>, bool) {
    let mut alive: Option<Partial> = None;
    let mut best: Option<Partial> = None;
    let mut excluded = false;
    for event in events {
        if let Some(path) = &alive {
            let at = path.times.len() - 1;
            for (j, &(from, to)) in spec.exclusions.iter().enumerate() {
                if excluded_by(event, j)
                    && at >= from
                    && at < to
                    && event.timestamp_us - path.first() <= spec.window_us
                {
                    excluded = true;
                }
            }
        }
        let continued = alive.as_ref().and_then(|path| {
            let step = path.times.len();
            (step < spec.steps && matches(event, step) && event.timestamp_us - path.first() <= spec.window_us)
                .then(|| path.extended(event))
        });
        alive = continued.or_else(|| matches(event, 0).then(|| Partial::start(event)));
        if let Some(path) = &alive {
            if best.as_ref().is_none_or(|b| path.times.len() > b.times.len()) {
                best = Some(path.clone());
            }
        }
    }
    (best, excluded)
}

/// Steps in any order: from each event that matches a step, the distinct
/// steps done within the window; each event counts for one step.
fn unordered(spec: &FunnelSpec, events: &[FunnelEvent]) -> (Option<Partial>, bool) {
    let step_bits: u64 = if spec.steps >= 32 { u32::MAX as u64 } else { (1u64 << spec.steps) - 1 };
    let mut best: Option<Partial> = None;
    for (i, start) in events.iter().enumerate() {
        if start.mask & step_bits == 0 {
            continue;
        }
        let mut done = 0u64;
        let mut path = Partial { times: Vec::new(), values: Vec::new() };
        for event in &events[i..] {
            if event.timestamp_us - start.timestamp_us > spec.window_us {
                break;
            }
            let fresh = event.mask & step_bits & !done;
            if fresh != 0 {
                done |= 1 << fresh.trailing_zeros();
                path.times.push(event.timestamp_us);
                path.values.push(event.breakdown.clone());
            }
        }
        if best.as_ref().is_none_or(|b| path.times.len() > b.times.len()) {
            best = Some(path);
        }
    }
    // An exclusion anywhere inside the chosen path drops the person.
    let excluded = best.as_ref().is_some_and(|path| {
        events.iter().any(|e| {
            (0..spec.exclusions.len()).any(|j| excluded_by(e, j))
                && e.timestamp_us >= path.first()
                && e.timestamp_us <= path.last()
        })
    });
    (best, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn spec(order: FunnelOrder, steps: usize) -> FunnelSpec {
        FunnelSpec {
            steps,
            window_us: 14 * 24 * HOUR,
            order,
            exclusions: Vec::new(),
            attribution: Attribution::FirstTouch,
        }
    }

    fn events(list: &[(i64, u64)]) -> Vec<FunnelEvent> {
        list.iter()
            .map(|&(h, mask)| FunnelEvent { timestamp_us: h * HOUR, mask, breakdown: Some(format!("at{h}")) })
            .collect()
    }

    fn steps(spec: &FunnelSpec, list: &[(i64, u64)]) -> usize {
        evaluate(spec, &mut events(list)).map_or(0, |p| p.times.len())
    }

    #[test]
    fn ordered_allows_events_between_and_respects_the_window() {
        let s = spec(FunnelOrder::Ordered, 3);
        assert_eq!(steps(&s, &[(0, 1), (1, 0), (2, 2), (3, 4)]), 3);
        assert_eq!(steps(&s, &[(0, 2), (1, 1), (2, 4)]), 1);
        assert_eq!(steps(&s, &[(0, 1), (15 * 24, 2)]), 1);
        // A later start still converts inside the window.
        assert_eq!(steps(&s, &[(0, 1), (15 * 24, 1), (15 * 24 + 1, 2)]), 2);
        // One event never serves two steps.
        assert_eq!(steps(&s, &[(0, 3)]), 1);
        // Equal timestamps are all tried.
        assert_eq!(steps(&s, &[(5, 2), (5, 1)]), 2);
    }

    #[test]
    fn strict_resets_on_any_other_event() {
        let s = spec(FunnelOrder::Strict, 3);
        assert_eq!(steps(&s, &[(0, 1), (1, 2), (2, 4)]), 3);
        assert_eq!(steps(&s, &[(0, 1), (1, 0), (2, 2)]), 1);
        assert_eq!(steps(&s, &[(0, 1), (1, 0), (2, 1), (3, 2)]), 2);
    }

    #[test]
    fn unordered_takes_steps_in_any_order() {
        let s = spec(FunnelOrder::Unordered, 3);
        assert_eq!(steps(&s, &[(0, 4), (1, 2), (2, 1)]), 3);
        assert_eq!(steps(&s, &[(0, 4), (1, 4)]), 1);
    }

    #[test]
    fn exclusions_drop_the_person() {
        let mut s = spec(FunnelOrder::Ordered, 2);
        s.exclusions = vec![(0, 1)];
        assert_eq!(evaluate(&s, &mut events(&[(0, 1), (1, 1 << 32), (2, 2)])), None);
        assert_eq!(steps(&s, &[(0, 1), (2, 2), (3, 1 << 32)]), 2);
    }

    #[test]
    fn attribution_picks_the_step_value() {
        let mut s = spec(FunnelOrder::Ordered, 2);
        let path = |s: &FunnelSpec| evaluate(s, &mut events(&[(1, 1), (2, 2)])).and_then(|p| p.breakdown);
        assert_eq!(path(&s).as_deref(), Some("at1"));
        s.attribution = Attribution::LastTouch;
        assert_eq!(path(&s).as_deref(), Some("at2"));
        s.attribution = Attribution::Step(1);
        assert_eq!(path(&s).as_deref(), Some("at2"));
    }
}
