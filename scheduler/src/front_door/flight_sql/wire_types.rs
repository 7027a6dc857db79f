//! The types results go out in: ones every Flight SQL client reads, and what a client may ask for in
//! a request header where its driver cannot read the default.

use std::sync::Arc;

use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use tonic::Request;

/// The request header (a JDBC URL property: the driver sends the ones it does not know as headers)
/// asking for timestamps without a time zone.
pub const NAIVE_TIMESTAMPS_HEADER: &str = "naive-timestamps";

/// What a client asked for, from its request's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WireTypes {
    /// Timestamps without a time zone, their values still UTC (`naive-timestamps=true`): the Arrow
    /// Flight SQL JDBC driver 18.3 throws "not implemented" on `getObject` of a timestamp with one,
    /// which DBeaver's data view calls for every cell.
    pub(crate) naive_timestamps: bool,
}

impl WireTypes {
    /// The types `request`'s headers ask for.
    pub(crate) fn of<T>(request: &Request<T>) -> WireTypes {
        let header = request.metadata().get(NAIVE_TIMESTAMPS_HEADER).and_then(|v| v.to_str().ok());
        WireTypes { naive_timestamps: header.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) }
    }

    /// A type every client reads: Flight SQL clients differ on views, large and dictionary strings and
    /// on timestamp units (Grafana reads every timestamp as nanoseconds).
    fn client_type(self, t: &DataType) -> DataType {
        match t {
            DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
            DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
            DataType::Dictionary(_, value) => self.client_type(value),
            // vitalflow's timestamps are UTC: without the zone the values stay the same instants.
            DataType::Timestamp(_, _) if self.naive_timestamps => DataType::Timestamp(TimeUnit::Nanosecond, None),
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
            other => other.clone(),
        }
    }

    /// The schema announced and streamed: client types, every field nullable, no metadata. Nullable
    /// because DataFusion's plan and Ballista's stages disagree on it (aggregates), and clients (ADBC)
    /// refuse a stream whose schema differs from the announced one.
    pub(crate) fn client_schema(self, schema: &SchemaRef) -> SchemaRef {
        Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), self.client_type(f.data_type()), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `batch` under `schema` (from `client_schema` of its plan), casting columns where types differ.
pub(crate) fn to_client_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, TimestampMicrosecondArray};
    use arrow::datatypes::TimestampNanosecondType;

    use super::*;

    #[test]
    fn client_types_are_plain_strings_and_nanosecond_timestamps() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new("d", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::LargeUtf8)), false),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        ]));
        let client = WireTypes::default().client_schema(&schema);
        let types: Vec<_> = client.fields().iter().map(|f| (f.data_type().clone(), f.is_nullable())).collect();
        assert_eq!(
            types,
            vec![
                (DataType::Utf8, true),
                (DataType::Utf8, true),
                (DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), true)
            ]
        );
    }

    #[test]
    fn a_client_asking_for_naive_timestamps_gets_the_same_instants_without_a_zone() {
        let mut request = Request::new(());
        request.metadata_mut().insert(NAIVE_TIMESTAMPS_HEADER, "TRUE".parse().unwrap());
        let types = WireTypes::of(&request);
        assert!(types.naive_timestamps);
        assert!(!WireTypes::of(&Request::new(())).naive_timestamps);

        let micros = 1_795_000_000_123_456;
        let column = TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([("event_time", Arc::new(column) as _)]).unwrap();
        let schema = types.client_schema(&batch.schema());
        assert_eq!(schema.field(0).data_type(), &DataType::Timestamp(TimeUnit::Nanosecond, None));
        let sent = to_client_batch(batch, &schema).unwrap();
        let sent = sent.column(0).as_primitive::<TimestampNanosecondType>();
        assert_eq!((sent.len(), sent.value(0)), (1, micros * 1_000));
    }
}
