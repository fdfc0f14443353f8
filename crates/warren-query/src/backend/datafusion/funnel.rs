//! `warren_funnel(timestamp, mask, breakdown, spec)`: the funnel aggregate
//! over one group's (person's) events, wrapping [`crate::funnel::evaluate`].
//! Its answer is `{times: [µs…], breakdown}` or null when the person did
//! not enter the funnel or was excluded.

use std::sync::Arc;

use warren_store::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Builder, ListBuilder, StringBuilder, StructArray,
};
use warren_store::arrow::compute::cast;
use warren_store::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use warren_store::datafusion::common::{exec_err, Result, ScalarValue};
use warren_store::datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use warren_store::datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use warren_store::datafusion::physical_plan::expressions::Literal;

use crate::funnel::{evaluate, FunnelEvent};
use crate::plan::{FunnelOrder, FunnelSpec};
use crate::render::datafusion::FUNNEL_FUNCTION;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct FunnelAggregate {
    signature: Signature,
}

impl FunnelAggregate {
    pub(crate) fn new() -> Self {
        Self { signature: Signature::any(4, Volatility::Immutable) }
    }
}

fn result_fields() -> Fields {
    Fields::from(vec![
        Field::new("times", DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))), true),
        Field::new("breakdown", DataType::Utf8, true),
    ])
}

fn list_of(data_type: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(data_type, true)))
}

impl AggregateUDFImpl for FunnelAggregate {
    fn name(&self) -> &str {
        FUNNEL_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(result_fields()))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(FunnelAccumulator { spec: spec_of(&args)?, events: Vec::new() }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    /// One accumulator for all groups (persons): far less overhead than a
    /// boxed accumulator per person, which is what a funnel has most of.
    fn create_groups_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(FunnelGroups { spec: spec_of(&args)?, groups: Vec::new() }))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new("timestamps", list_of(DataType::Int64), true)),
            Arc::new(Field::new("masks", list_of(DataType::Int64), true)),
            Arc::new(Field::new("breakdowns", list_of(DataType::Utf8), true)),
        ])
    }
}

fn spec_of(args: &AccumulatorArgs) -> Result<Arc<FunnelSpec>> {
    let spec = args.exprs.get(3).and_then(|e| e.downcast_ref::<Literal>()).and_then(|l| match l.value() {
        ScalarValue::Utf8(Some(text)) => serde_json::from_str::<FunnelSpec>(text.as_str()).ok(),
        _ => None,
    });
    match spec {
        // Users' SQL can call the function too, so its spec is checked.
        Some(spec) if spec_is_sound(&spec) => Ok(Arc::new(spec)),
        Some(_) => exec_err!(
            "{FUNNEL_FUNCTION}: 1 to 31 steps, at most 31 exclusions inside them, a window of 0 or more"
        ),
        None => exec_err!("{FUNNEL_FUNCTION}: the fourth argument must be a literal funnel spec"),
    }
}

fn spec_is_sound(spec: &FunnelSpec) -> bool {
    (1..=31).contains(&spec.steps)
        && spec.window_us >= 0
        && spec.exclusions.len() <= 31
        && spec.exclusions.iter().all(|&(from, to)| from < to && to < spec.steps)
        && match spec.attribution {
            crate::plan::Attribution::Step(step) => step < spec.steps,
            _ => true,
        }
}

/// `(timestamps, masks, breakdowns)` as the typed arrays events come in.
struct EventColumns {
    timestamps: ArrayRef,
    masks: ArrayRef,
    breakdowns: ArrayRef,
}

impl EventColumns {
    fn cast(timestamps: &ArrayRef, masks: &ArrayRef, breakdowns: &ArrayRef) -> Result<Self> {
        Ok(Self {
            timestamps: cast(timestamps, &DataType::Int64)?,
            masks: cast(masks, &DataType::Int64)?,
            breakdowns: cast(breakdowns, &DataType::Utf8)?,
        })
    }

    /// Row `row` as an event, unless the funnel has no use for it.
    fn event(&self, row: usize, strict: bool) -> Option<FunnelEvent> {
        let (timestamps, masks) =
            (self.timestamps.as_primitive::<Int64Type>(), self.masks.as_primitive::<Int64Type>());
        let breakdowns = self.breakdowns.as_string::<i32>();
        if timestamps.is_null(row) || masks.is_null(row) || (masks.value(row) == 0 && !strict) {
            return None;
        }
        Some(FunnelEvent {
            timestamp_us: timestamps.value(row),
            mask: masks.value(row) as u64,
            breakdown: (!breakdowns.is_null(row)).then(|| breakdowns.value(row).to_string()),
        })
    }
}

fn events_size(events: &[FunnelEvent]) -> usize {
    std::mem::size_of_val(events)
        + events.iter().map(|e| e.breakdown.as_ref().map_or(0, String::capacity)).sum::<usize>()
}

/// The funnel of each group, as the aggregate's struct column.
fn evaluate_groups(spec: &FunnelSpec, groups: Vec<Vec<FunnelEvent>>) -> Result<ArrayRef> {
    let mut times = ListBuilder::new(Int64Builder::new())
        .with_field(Arc::new(Field::new_list_field(DataType::Int64, true)));
    let mut breakdowns = StringBuilder::new();
    for mut events in groups {
        match evaluate(spec, &mut events) {
            Some(path) => {
                times.values().append_slice(&path.times);
                times.append(true);
                breakdowns.append_option(path.breakdown);
            }
            None => {
                times.append(false);
                breakdowns.append_null();
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![Arc::new(times.finish()), Arc::new(breakdowns.finish())];
    Ok(Arc::new(StructArray::try_new(result_fields(), columns, None)?))
}

/// The partial state of each group: its events as three lists.
fn state_of(groups: &[Vec<FunnelEvent>]) -> Vec<ArrayRef> {
    let mut timestamps = ListBuilder::new(Int64Builder::new());
    let mut masks = ListBuilder::new(Int64Builder::new());
    let mut breakdowns = ListBuilder::new(StringBuilder::new());
    for events in groups {
        for e in events {
            timestamps.values().append_value(e.timestamp_us);
            masks.values().append_value(e.mask as i64);
            breakdowns.values().append_option(e.breakdown.as_deref());
        }
        timestamps.append(true);
        masks.append(true);
        breakdowns.append(true);
    }
    vec![Arc::new(timestamps.finish()), Arc::new(masks.finish()), Arc::new(breakdowns.finish())]
}

#[derive(Debug)]
struct FunnelGroups {
    spec: Arc<FunnelSpec>,
    groups: Vec<Vec<FunnelEvent>>,
}

impl GroupsAccumulator for FunnelGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        if values.len() < 3 {
            return exec_err!("{FUNNEL_FUNCTION} takes (timestamp, mask, breakdown, spec)");
        }
        self.groups.resize_with(total_num_groups, Vec::new);
        let columns = EventColumns::cast(&values[0], &values[1], &values[2])?;
        let strict = self.spec.order == FunnelOrder::Strict;
        for (row, &group) in group_indices.iter().enumerate() {
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            if let Some(event) = columns.event(row, strict) {
                self.groups[group].push(event);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        evaluate_groups(&self.spec, emit_to.take_needed(&mut self.groups))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(state_of(&emit_to.take_needed(&mut self.groups)))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        if values.len() < 3 {
            return exec_err!("{FUNNEL_FUNCTION}: malformed partial state");
        }
        self.groups.resize_with(total_num_groups, Vec::new);
        let lists = (values[0].as_list::<i32>(), values[1].as_list::<i32>(), values[2].as_list::<i32>());
        // The lists share their layout; their values are cast once.
        let columns = EventColumns::cast(lists.0.values(), lists.1.values(), lists.2.values())?;
        let offsets = lists.0.value_offsets();
        for (row, &group) in group_indices.iter().enumerate() {
            if lists.0.is_null(row) {
                continue;
            }
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            self.groups[group].extend((start..end).filter_map(|i| columns.event(i, true)));
        }
        Ok(())
    }

    /// Each row as a group of its own, for when partial aggregation is
    /// skipped.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        if values.len() < 3 {
            return exec_err!("{FUNNEL_FUNCTION} takes (timestamp, mask, breakdown, spec)");
        }
        let columns = EventColumns::cast(&values[0], &values[1], &values[2])?;
        let strict = self.spec.order == FunnelOrder::Strict;
        let groups: Vec<Vec<FunnelEvent>> = (0..columns.timestamps.len())
            .map(|row| {
                let kept = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                kept.then(|| columns.event(row, strict)).flatten().into_iter().collect()
            })
            .collect();
        Ok(state_of(&groups))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.groups.capacity() * std::mem::size_of::<Vec<FunnelEvent>>()
            + self.groups.iter().map(|g| events_size(g)).sum::<usize>()
    }
}

#[derive(Debug)]
struct FunnelAccumulator {
    spec: Arc<FunnelSpec>,
    events: Vec<FunnelEvent>,
}

impl FunnelAccumulator {
    fn push(&mut self, timestamps: &ArrayRef, masks: &ArrayRef, breakdowns: &ArrayRef) -> Result<()> {
        let columns = EventColumns::cast(timestamps, masks, breakdowns)?;
        let strict = self.spec.order == FunnelOrder::Strict;
        self.events.extend((0..columns.timestamps.len()).filter_map(|row| columns.event(row, strict)));
        Ok(())
    }
}

impl Accumulator for FunnelAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if values.len() < 3 {
            return exec_err!("{FUNNEL_FUNCTION} takes (timestamp, mask, breakdown, spec)");
        }
        self.push(&values[0], &values[1], &values[2])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let array = evaluate_groups(&self.spec, vec![std::mem::take(&mut self.events)])?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + events_size(&self.events)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        state_of(std::slice::from_ref(&self.events))
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if states.len() < 3 {
            return exec_err!("{FUNNEL_FUNCTION}: malformed partial state");
        }
        let (timestamps, masks, breakdowns) =
            (states[0].as_list::<i32>(), states[1].as_list::<i32>(), states[2].as_list::<i32>());
        for row in 0..timestamps.len() {
            if timestamps.is_null(row) {
                continue;
            }
            self.push(&timestamps.value(row), &masks.value(row), &breakdowns.value(row))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_store::arrow::array::{Int64Array, StringArray};

    #[test]
    fn state_round_trips_through_merge() {
        let spec = FunnelSpec {
            steps: 2,
            window_us: 1_000,
            order: crate::plan::FunnelOrder::Ordered,
            exclusions: Vec::new(),
            attribution: crate::plan::Attribution::FirstTouch,
        };
        let mut first = FunnelAccumulator { spec: Arc::new(spec.clone()), events: Vec::new() };
        let ts: ArrayRef = Arc::new(Int64Array::from(vec![10, 20]));
        let masks: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let bd: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
        first.update_batch(&[ts, masks, bd]).unwrap_or_else(|e| panic!("{e}"));
        let state: Vec<ArrayRef> = first
            .state()
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.to_array().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let mut second = FunnelAccumulator { spec: Arc::new(spec), events: Vec::new() };
        second.merge_batch(&state).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second.events, first.events);
        let ScalarValue::Struct(result) = second.evaluate().unwrap_or_else(|e| panic!("{e}")) else {
            panic!("not a struct")
        };
        assert_eq!(result.column(0).as_list::<i32>().value(0).len(), 2);
    }
}
