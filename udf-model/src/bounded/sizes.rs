//! How many bytes a value-building function's call will make, worked out from its arguments before
//! it runs. Each figure is an upper bound that is close for the ordinary case: the bytes of the
//! strings or list elements built, summed over the call's rows. A NULL argument builds nothing.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit, TimestampNanosecondType,
};
use datafusion::common::Result;

/// Nanoseconds in a day.
const DAY_NANOS: i128 = 86_400_000_000_000;
/// Bytes of one element of a `range` list (Int64, timestamps; dates take 4).
const RANGE_ELEMENT_BYTES: u128 = 8;

/// The ways a wrapped function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum OutputSize {
    /// `repeat(text, n)`: the text's bytes `n` times.
    Repeat,
    /// `lpad`/`rpad(text, n [, fill])`: `n` characters (one byte each for ASCII) beside the text.
    Pad,
    /// `replace(text, from, to)`: every occurrence of `from` (between every character when it is
    /// empty) becomes `to`.
    Replace,
    /// `array_repeat(element, n)`: the element `n` times.
    ArrayRepeat,
    /// `array_resize(list, n [, value])`: `n` elements.
    ArrayResize,
    /// `range`/`generate_series(start, stop [, step])`: one element per step.
    Range,
}

/// `array` as Int64 values (NULL where it does not convert).
fn int64s(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Int64)?)
}

/// The count in `counts` at `row`, 0 when NULL or negative.
fn count_at(counts: &ArrayRef, row: usize) -> u128 {
    let counts = counts.as_primitive::<Int64Type>();
    let i = at(counts.len(), row);
    if counts.is_null(i) { 0 } else { u128::try_from(counts.value(i)).unwrap_or(0) }
}

/// The index of row `row` in an array of `len` rows, where a one-row array (a scalar argument)
/// stands for every row.
fn at(len: usize, row: usize) -> usize {
    if len == 1 { 0 } else { row }
}

/// The bytes of row `row` of `array` (one element's worth), at least 1.
fn element_bytes(array: &ArrayRef, row: usize) -> u128 {
    let data = array.to_data().slice(at(array.len(), row), 1);
    data.get_slice_memory_size().map_or(RANGE_ELEMENT_BYTES, |b| b as u128).max(1)
}

/// The byte lengths of `strings` (any string type), as Int64 (NULL stays NULL).
fn byte_lengths(strings: &ArrayRef) -> Result<ArrayRef> {
    let lengths = match strings.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary => {
            arrow::compute::kernels::length::length(strings)?
        }
        _ => arrow::compute::kernels::length::length(&cast(strings, &DataType::LargeUtf8)?)?,
    };
    int64s(&lengths)
}

impl OutputSize {
    /// The bytes a call on `args` over `rows` rows builds; stops counting once past `enough`.
    pub(super) fn bytes(self, args: &[ArrayRef], rows: usize, enough: u128) -> Result<u128> {
        let per_row = self.sizer(args)?;
        let mut total: u128 = 0;
        for row in 0..rows {
            total = total.saturating_add(per_row(row));
            if total > enough {
                break;
            }
        }
        Ok(total)
    }

    /// A function giving the bytes of each row.
    fn sizer<'a>(self, args: &'a [ArrayRef]) -> Result<Box<dyn Fn(usize) -> u128 + 'a>> {
        let arg = |i: usize| args.get(i);
        Ok(match self {
            OutputSize::Repeat | OutputSize::Pad => {
                let (Some(text), Some(n)) = (arg(0), arg(1)) else { return Ok(Box::new(|_| 0)) };
                let (lengths, counts) = (byte_lengths(text)?, int64s(n)?);
                let fill = arg(2).map(byte_lengths).transpose()?;
                Box::new(move |row| {
                    let length = count_at(&lengths, row);
                    let n = count_at(&counts, row);
                    match (self, &fill) {
                        (OutputSize::Repeat, _) => length.saturating_mul(n),
                        // A fill of several bytes a character: at most its bytes per character.
                        (_, Some(fill)) => length + n.saturating_mul(count_at(fill, row).clamp(1, 4)),
                        _ => length + n,
                    }
                })
            }
            OutputSize::Replace => {
                let (Some(text), Some(from), Some(to)) = (arg(0), arg(1), arg(2)) else { return Ok(Box::new(|_| 0)) };
                let (text, from, to) = (byte_lengths(text)?, byte_lengths(from)?, byte_lengths(to)?);
                Box::new(move |row| {
                    let length = count_at(&text, row);
                    // An empty pattern matches between every two bytes and at both ends.
                    let matches = length / count_at(&from, row).max(1) + 1;
                    length + matches.saturating_mul(count_at(&to, row))
                })
            }
            OutputSize::ArrayRepeat => {
                let (Some(element), Some(n)) = (arg(0), arg(1)) else { return Ok(Box::new(|_| 0)) };
                let counts = int64s(n)?;
                Box::new(move |row| count_at(&counts, row).saturating_mul(element_bytes(element, row)))
            }
            OutputSize::ArrayResize => {
                let (Some(_), Some(n)) = (arg(0), arg(1)) else { return Ok(Box::new(|_| 0)) };
                let counts = int64s(n)?;
                let value = arg(2);
                Box::new(move |row| {
                    let element = value.map_or(RANGE_ELEMENT_BYTES, |v| element_bytes(v, row));
                    count_at(&counts, row).saturating_mul(element)
                })
            }
            OutputSize::Range => range_sizer(args)?,
        })
    }
}

/// `range`/`generate_series` on integers (`stop`, `start, stop`, `start, stop, step`), dates or
/// timestamps (`start, stop, interval`): |stop − start| / |step| + 1 elements.
fn range_sizer<'a>(args: &'a [ArrayRef]) -> Result<Box<dyn Fn(usize) -> u128 + 'a>> {
    // Everything as i128 in one unit: integers as they are, dates and timestamps in nanoseconds.
    let points = |array: &ArrayRef| -> Result<Vec<Option<i128>>> {
        Ok(match array.data_type() {
            DataType::Timestamp(..) => {
                let nanos = cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
                nanos.as_primitive::<TimestampNanosecondType>().iter().map(|v| v.map(i128::from)).collect()
            }
            DataType::Date32 | DataType::Date64 | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let days = cast(array, &DataType::Date32)?;
                days.as_primitive::<Date32Type>().iter().map(|v| v.map(|d| i128::from(d) * DAY_NANOS)).collect()
            }
            _ => int64s(array)?.as_primitive::<Int64Type>().iter().map(|v| v.map(i128::from)).collect(),
        })
    };
    let (start, stop) = match args {
        [stop] => (vec![Some(0)], points(stop)?),
        [start, stop, ..] => (points(start)?, points(stop)?),
        [] => return Ok(Box::new(|_| 0)),
    };
    let steps: Vec<Option<i128>> = match args.get(2) {
        None => vec![Some(1)],
        Some(step) if matches!(step.data_type(), DataType::Interval(_)) => {
            let step = cast(step, &DataType::Interval(IntervalUnit::MonthDayNano))?;
            step.as_primitive::<IntervalMonthDayNanoType>()
                .iter()
                .map(|v| {
                    // A month is at least 28 days: the count is never under-estimated.
                    v.map(|i| {
                        i128::from(i.months) * 28 * DAY_NANOS
                            + i128::from(i.days) * DAY_NANOS
                            + i128::from(i.nanoseconds)
                    })
                })
                .collect()
        }
        Some(step) => points(step)?,
    };
    Ok(Box::new(move |row| {
        let pick = |values: &Vec<Option<i128>>| values.get(at(values.len(), row)).copied().flatten();
        let (Some(start), Some(stop), Some(step)) = (pick(&start), pick(&stop), pick(&steps)) else { return 0 };
        // A zero step is the function's own error to give; a step that mixes signs is counted small.
        let step = step.unsigned_abs().max(1);
        let elements = (stop - start).unsigned_abs() / step + 1;
        elements.saturating_mul(RANGE_ELEMENT_BYTES)
    }))
}
