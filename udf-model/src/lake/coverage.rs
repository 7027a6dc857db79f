//! Which files of a table a reader sees: a file whose name states a span that lies inside another
//! file's span is *covered* and hidden. This is what makes rewriting files safe for readers without
//! locks: a compacted file is written first, and from that moment its inputs are hidden (no row is
//! counted twice); the inputs are deleted later, after a grace period longer than any query's
//! planning-to-read window (no query loses a file it planned to read).
//!
//! A span is read from the file name: `<group>-<first>-<last>.parquet` covers `first..=last`, and
//! `<group>-<n>.parquet` covers `n..=n` (numbers in decimal, any width). Files of one group only cover
//! each other. The names in use:
//! - `vitals_raw`: ingest's `<topic>-p<partition>-<first>-<last>.parquet` (group `<topic>-p<partition>`,
//!   span = Kafka offsets); a compacted file is named the same way over the whole range, so ingest still
//!   resumes after it and the ETL still knows it processed it.
//! - `vitals_clean`: the ETL's `batch-<id>.parquet`; compacted `batch-<first>-<last>.parquet`.
//! - A table keeping only its newest version (e.g. `patient_latest`) names each version
//!   `<name>-0-<version>.parquet`: each version covers every earlier one.
//!
//! [`ResolvingStore`] applies this to every listing DataFusion makes, so a `ListingTable` over a
//! directory sees only the visible files, in the scheduler (which plans Ballista jobs) and in
//! in-process contexts alike.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions,
};

/// The span a file name states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Files cover each other only within a group.
    pub group: String,
    /// First number covered.
    pub first: i64,
    /// Last number covered (inclusive).
    pub last: i64,
}

impl Span {
    /// Reads the span of a file name (the last path segment); `None` for names without one.
    pub fn parse(file_name: &str) -> Option<Span> {
        let stem = file_name.strip_suffix(".parquet")?;
        let number =
            |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<i64>().ok()).flatten();
        let (rest, last_part) = stem.rsplit_once('-')?;
        let last = number(last_part)?;
        match rest.rsplit_once('-') {
            Some((group, first_part)) if number(first_part).is_some() => {
                let first = number(first_part)?;
                (first <= last && !group.is_empty()).then(|| Span { group: group.to_string(), first, last })
            }
            _ => (!rest.is_empty()).then(|| Span { group: rest.to_string(), first: last, last }),
        }
    }

    /// Whether `self` covers `other`: same group and a span at least as wide around it.
    pub fn covers(&self, other: &Span) -> bool {
        self.group == other.group
            && self.first <= other.first
            && other.last <= self.last
            && (self.first, self.last) != (other.first, other.last)
    }
}

/// The span of an object, from its file name.
pub fn span_of(path: &Path) -> Option<Span> {
    path.filename().and_then(Span::parse)
}

/// For each covered file among `files`, the file covering it (the widest one). Files without a span
/// are never covered.
pub fn covered_by(files: &[ObjectMeta]) -> HashMap<Path, ObjectMeta> {
    let mut groups: BTreeMap<String, Vec<(Span, &ObjectMeta)>> = BTreeMap::new();
    for meta in files {
        if let Some(span) = span_of(&meta.location) {
            groups.entry(span.group.clone()).or_default().push((span, meta));
        }
    }
    let mut covered = HashMap::new();
    for mut spans in groups.into_values() {
        // By first ascending, then widest first: a file is covered iff an earlier entry reaches past its end.
        spans.sort_by(|(a, _), (b, _)| a.first.cmp(&b.first).then(b.last.cmp(&a.last)));
        let mut widest: Option<&(Span, &ObjectMeta)> = None;
        for entry in &spans {
            match widest {
                Some(w) if w.0.covers(&entry.0) => {
                    covered.insert(entry.1.location.clone(), w.1.clone());
                }
                Some(w) if w.0.last >= entry.0.last => {}
                _ => widest = Some(entry),
            }
        }
    }
    covered
}

/// `files` without the covered ones.
pub fn visible(files: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let covered = covered_by(&files);
    files.into_iter().filter(|m| !covered.contains_key(&m.location)).collect()
}

/// An object store whose listings hide covered files; every other operation passes through.
#[derive(Debug)]
pub struct ResolvingStore {
    inner: Arc<dyn ObjectStore>,
}

impl ResolvingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> ResolvingStore {
        ResolvingStore { inner }
    }
}

impl fmt::Display for ResolvingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResolvingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ResolvingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    /// The whole listing is read before anything is returned: coverage needs every name.
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        futures::stream::once(async move {
            let files: Vec<ObjectMeta> = listing.try_collect().await?;
            Ok::<_, object_store::Error>(futures::stream::iter(visible(files).into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects = visible(std::mem::take(&mut result.objects));
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(name),
            last_modified: chrono::Utc::now(),
            size: 1,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn spans_come_from_file_names() {
        let s = |g: &str, first, last| Some(Span { group: g.into(), first, last });
        assert_eq!(Span::parse("ward-3-p0-00000000000000000005-00000000000000000009.parquet"), s("ward-3-p0", 5, 9));
        assert_eq!(Span::parse("batch-000000000012.parquet"), s("batch", 12, 12));
        assert_eq!(Span::parse("batch-000000000001-000000000012.parquet"), s("batch", 1, 12));
        assert_eq!(Span::parse("patient_latest-0-7.parquet"), s("patient_latest", 0, 7));
        for none in ["notes.parquet", "batch-12.csv", "-5.parquet", "batch-9-3.parquet", "batch-x.parquet", "7.parquet"]
        {
            assert_eq!(Span::parse(none), None, "{none}");
        }
    }

    #[test]
    fn a_file_inside_another_files_span_is_hidden() {
        let files = vec![
            meta("t/raw-p0-1-10.parquet"),
            meta("t/raw-p0-11-20.parquet"),
            meta("t/raw-p0-1-20.parquet"),
            meta("t/raw-p0-21-30.parquet"),
            // Another partition's identical range is not covered.
            meta("t/raw-p1-1-10.parquet"),
            meta("t/batch-3.parquet"),
            meta("t/batch-1-2.parquet"),
            meta("t/batch-1.parquet"),
            meta("t/readme.parquet"),
        ];
        let names: Vec<String> = visible(files.clone()).into_iter().map(|m| m.location.to_string()).collect();
        assert_eq!(
            names,
            [
                "t/raw-p0-1-20.parquet",
                "t/raw-p0-21-30.parquet",
                "t/raw-p1-1-10.parquet",
                "t/batch-3.parquet",
                "t/batch-1-2.parquet",
                "t/readme.parquet"
            ]
        );
        let covered = covered_by(&files);
        assert_eq!(covered[&Path::from("t/raw-p0-11-20.parquet")].location, Path::from("t/raw-p0-1-20.parquet"));
        assert_eq!(covered.len(), 3);
        // Newest-version naming: each version covers every earlier one.
        let versions = vec![
            meta("p/patient_latest-0-3.parquet"),
            meta("p/patient_latest-0-9.parquet"),
            meta("p/patient_latest-0-5.parquet"),
        ];
        let names: Vec<String> = visible(versions).into_iter().map(|m| m.location.to_string()).collect();
        assert_eq!(names, ["p/patient_latest-0-9.parquet"]);
    }
}
