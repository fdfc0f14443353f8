//! Arrow arrays as [`Cell`]s.

use warren_store::arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array, Int32Array,
    Int64Array, Int8Array, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use warren_store::arrow::datatypes::{DataType, TimeUnit};
use warren_store::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::backend::Cell;

/// Row `row` of `array`.
pub(crate) fn cell(array: &dyn Array, row: usize) -> Cell {
    if array.is_null(row) {
        return Cell::Null;
    }
    macro_rules! int {
        ($t:ty) => {
            array.as_any().downcast_ref::<$t>().map_or(Cell::Null, |a| Cell::Int(a.value(row) as i64))
        };
    }
    match array.data_type() {
        DataType::Boolean => {
            array.as_any().downcast_ref::<BooleanArray>().map_or(Cell::Null, |a| Cell::Bool(a.value(row)))
        }
        DataType::Int8 => int!(Int8Array),
        DataType::Int16 => int!(Int16Array),
        DataType::Int32 => int!(Int32Array),
        DataType::Int64 => int!(Int64Array),
        DataType::UInt8 => int!(UInt8Array),
        DataType::UInt16 => int!(UInt16Array),
        DataType::UInt32 => int!(UInt32Array),
        DataType::UInt64 => int!(UInt64Array),
        DataType::Float32 => array
            .as_any()
            .downcast_ref::<Float32Array>()
            .map_or(Cell::Null, |a| Cell::Float(a.value(row) as f64)),
        DataType::Float64 => {
            array.as_any().downcast_ref::<Float64Array>().map_or(Cell::Null, |a| Cell::Float(a.value(row)))
        }
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(row).to_string()),
        DataType::Timestamp(unit, zone) => {
            let value = match unit {
                TimeUnit::Second => array
                    .as_primitive::<warren_store::arrow::datatypes::TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<warren_store::arrow::datatypes::TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => array
                    .as_primitive::<warren_store::arrow::datatypes::TimestampMicrosecondType>()
                    .value(row),
                TimeUnit::Nanosecond => {
                    array.as_primitive::<warren_store::arrow::datatypes::TimestampNanosecondType>().value(row)
                        / 1_000
                }
            };
            Cell::Timestamp { us: value, utc: zone.is_some() }
        }
        DataType::Date32 => array
            .as_any()
            .downcast_ref::<Date32Array>()
            .map_or(Cell::Null, |a| Cell::Timestamp { us: a.value(row) as i64 * 86_400_000_000, utc: false }),
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            Cell::List((0..items.len()).map(|i| cell(items.as_ref(), i)).collect())
        }
        DataType::LargeList(_) => {
            let items = array.as_list::<i64>().value(row);
            Cell::List((0..items.len()).map(|i| cell(items.as_ref(), i)).collect())
        }
        DataType::Struct(fields) => {
            let array = array.as_struct();
            Cell::Struct(
                fields
                    .iter()
                    .zip(array.columns())
                    .map(|(f, column)| (f.name().clone(), cell(column.as_ref(), row)))
                    .collect(),
            )
        }
        _ => ArrayFormatter::try_new(array, &FormatOptions::default())
            .map_or(Cell::Null, |f| Cell::Text(f.value(row).to_string())),
    }
}
