//! `warren_funnel(timestamp, mask, breakdown, spec)`: the funnel aggregate
//! over one group's (person's) events, wrapping [`crate::funnel::evaluate`].
//! Its answer is `{times: [µs…], breakdown}` or null when the person did
//! not enter the funnel or was excluded.

use std::sync::Arc;

use warren_store::arrow::array::{
    Array, ArrayRef, AsArray, ListArray, ListBuilder, StringArray, StringBuilder, StructArray,
};
use warren_store::arrow::compute::cast;
use warren_store::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type};
use warren_store::datafusion::common::{exec_err, Result, ScalarValue};
use warren_store::datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use warren_store::datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use warren_store::datafusion::physical_plan::expressions::Literal;

use crate::funnel::{evaluate, FunnelEvent};
use crate::plan::FunnelSpec;
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
        let spec =
            args.exprs.get(3).and_then(|e| e.downcast_ref::<Literal>()).and_then(|l| match l.value() {
                ScalarValue::Utf8(Some(text)) => serde_json::from_str::<FunnelSpec>(text.as_str()).ok(),
                _ => None,
            });
        match spec {
            Some(spec) => Ok(Box::new(FunnelAccumulator { spec: Arc::new(spec), events: Vec::new() })),
            None => exec_err!("{FUNNEL_FUNCTION}: the fourth argument must be a literal funnel spec"),
        }
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new("timestamps", list_of(DataType::Int64), true)),
            Arc::new(Field::new("masks", list_of(DataType::Int64), true)),
            Arc::new(Field::new("breakdowns", list_of(DataType::Utf8), true)),
        ])
    }
}

#[derive(Debug)]
struct FunnelAccumulator {
    spec: Arc<FunnelSpec>,
    events: Vec<FunnelEvent>,
}

impl FunnelAccumulator {
    fn push(&mut self, timestamps: &ArrayRef, masks: &ArrayRef, breakdowns: &ArrayRef) -> Result<()> {
        let timestamps = cast(timestamps, &DataType::Int64)?;
        let masks = cast(masks, &DataType::Int64)?;
        let breakdowns = cast(breakdowns, &DataType::Utf8)?;
        let timestamps = timestamps.as_primitive::<Int64Type>();
        let masks = masks.as_primitive::<Int64Type>();
        let breakdowns = breakdowns.as_string::<i32>();
        for row in 0..timestamps.len() {
            if timestamps.is_null(row)
                || masks.is_null(row)
                || masks.value(row) == 0 && self.spec.order != crate::plan::FunnelOrder::Strict
            {
                continue;
            }
            self.events.push(FunnelEvent {
                timestamp_us: timestamps.value(row),
                mask: masks.value(row) as u64,
                breakdown: (!breakdowns.is_null(row)).then(|| breakdowns.value(row).to_string()),
            });
        }
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
        let path = evaluate(&self.spec, &mut self.events);
        let (times, breakdown): (Option<Vec<Option<i64>>>, Option<String>) = match path {
            Some(path) => (Some(path.times.into_iter().map(Some).collect()), path.breakdown),
            None => (None, None),
        };
        let times: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>([times]));
        let breakdown: ArrayRef = Arc::new(StringArray::from(vec![breakdown]));
        let fields = result_fields();
        let array = StructArray::try_new(fields, vec![times, breakdown], None)?;
        Ok(ScalarValue::Struct(Arc::new(array)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.events.capacity() * std::mem::size_of::<FunnelEvent>()
            + self.events.iter().map(|e| e.breakdown.as_ref().map_or(0, String::capacity)).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let timestamps = ListArray::from_iter_primitive::<Int64Type, _, _>([Some(
            self.events.iter().map(|e| Some(e.timestamp_us)).collect::<Vec<_>>(),
        )]);
        let masks = ListArray::from_iter_primitive::<Int64Type, _, _>([Some(
            self.events.iter().map(|e| Some(e.mask as i64)).collect::<Vec<_>>(),
        )]);
        let mut breakdowns = ListBuilder::new(StringBuilder::new());
        for event in &self.events {
            breakdowns.values().append_option(event.breakdown.as_deref());
        }
        breakdowns.append(true);
        Ok(vec![
            ScalarValue::List(Arc::new(timestamps)),
            ScalarValue::List(Arc::new(masks)),
            ScalarValue::List(Arc::new(breakdowns.finish())),
        ])
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
    use warren_store::arrow::array::Int64Array;

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
