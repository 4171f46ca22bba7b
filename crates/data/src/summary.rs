//! Summary statistics of a preference file, for `softalign data check`.

use serde::Serialize;

use crate::format::Format;
use crate::labels;
use crate::read::{Layout, LoadedPairs};

/// Number of label-histogram bins over [0.5, 1].
pub const HISTOGRAM_BINS: usize = 10;

/// Min, mean, median and max of a set of lengths (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LengthStats {
    /// Shortest.
    pub min: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Longest.
    pub max: usize,
}

impl LengthStats {
    /// The statistics of `lengths`, or `None` when there are none.
    ///
    /// ```
    /// use softalign_data::LengthStats;
    /// let stats = LengthStats::of([4, 1, 3, 10]).unwrap();
    /// assert_eq!((stats.min, stats.mean, stats.median, stats.max), (1, 4.5, 3.5, 10));
    /// ```
    pub fn of(lengths: impl IntoIterator<Item = usize>) -> Option<LengthStats> {
        let mut lengths: Vec<usize> = lengths.into_iter().collect();
        if lengths.is_empty() {
            return None;
        }
        lengths.sort_unstable();
        let n = lengths.len();
        let median = if n % 2 == 1 {
            lengths[n / 2] as f64
        } else {
            (lengths[n / 2 - 1] + lengths[n / 2]) as f64 / 2.0
        };
        Some(LengthStats {
            min: lengths[0],
            mean: lengths.iter().sum::<usize>() as f64 / n as f64,
            median,
            max: lengths[n - 1],
        })
    }
}

/// Counts of oriented labels p̂ ∈ [0.5, 1] in ten bins of width 0.05: bin i covers
/// [0.5 + 0.05 i, 0.5 + 0.05 (i + 1)), and the last bin also holds 1.0 (so binary labels land there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelHistogram {
    /// Count per bin, from [0.5, 0.55) to [0.95, 1].
    pub counts: [usize; HISTOGRAM_BINS],
}

impl LabelHistogram {
    /// Histogram of labels in [0.5, 1]; values outside are clamped into the end bins.
    ///
    /// ```
    /// use softalign_data::LabelHistogram;
    /// let histogram = LabelHistogram::of([0.5, 0.6, 0.6, 1.0, 0.97]);
    /// assert_eq!(histogram.counts, [1, 0, 2, 0, 0, 0, 0, 0, 0, 2]);
    /// ```
    pub fn of(labels: impl IntoIterator<Item = f64>) -> LabelHistogram {
        let mut counts = [0; HISTOGRAM_BINS];
        for label in labels {
            counts[Self::bin(label)] += 1;
        }
        LabelHistogram { counts }
    }

    /// The bin of a label. The 1e-9 nudge puts edge values such as 0.6, whose scaled value is
    /// 1.9999999999999996 in floating point, into the bin they start.
    pub fn bin(label: f64) -> usize {
        let scaled = (label - 0.5) * (2.0 * HISTOGRAM_BINS as f64) + 1e-9;
        (scaled.floor().max(0.0) as usize).min(HISTOGRAM_BINS - 1)
    }

    /// The [lo, hi) edges of bin `index`.
    pub fn edges(index: usize) -> (f64, f64) {
        let width = 0.5 / HISTOGRAM_BINS as f64;
        (0.5 + width * index as f64, 0.5 + width * (index + 1) as f64)
    }
}

/// What `softalign data check` reports about a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The file.
    pub file: String,
    /// JSONL or JSON array.
    pub layout: Layout,
    /// The format read (`None` when no record is a JSON object).
    pub format: Option<Format>,
    /// Records seen.
    pub records: usize,
    /// Records that became pairs.
    pub valid: usize,
    /// Records with at least one problem.
    pub invalid: usize,
    /// Problems found (a record may have several).
    pub problems: usize,
    /// Valid records whose label was below 0.5, swapped on loading.
    pub reoriented: usize,
    /// Prompt lengths in characters (a conversation counts its messages' contents).
    pub prompt_chars: Option<LengthStats>,
    /// Chosen-response lengths in characters.
    pub chosen_chars: Option<LengthStats>,
    /// Rejected-response lengths in characters.
    pub rejected_chars: Option<LengthStats>,
    /// Valid pairs with a soft label (p̂ < 1).
    pub soft_labels: usize,
    /// Valid pairs with a binary label (p̂ = 1).
    pub binary_labels: usize,
    /// Mean p̂ over the valid pairs (`None` when there are none).
    pub mean_label: Option<f64>,
    /// Oriented labels in ten bins over [0.5, 1].
    pub histogram: LabelHistogram,
}

impl Summary {
    /// Summarises a loaded file.
    pub fn of(loaded: &LoadedPairs) -> Summary {
        let pairs = &loaded.pairs;
        let chars = |text: &String| text.chars().count();
        let soft_labels = pairs
            .iter()
            .filter(|p| labels::is_soft(p.soft_label))
            .count();
        Summary {
            file: loaded.path.display().to_string(),
            layout: loaded.layout,
            format: loaded.format,
            records: loaded.records,
            valid: pairs.len(),
            invalid: loaded.invalid_records,
            problems: loaded.problems.len(),
            reoriented: loaded.reoriented,
            prompt_chars: LengthStats::of(pairs.iter().map(|p| p.prompt.char_len())),
            chosen_chars: LengthStats::of(pairs.iter().map(|p| chars(&p.chosen))),
            rejected_chars: LengthStats::of(pairs.iter().map(|p| chars(&p.rejected))),
            soft_labels,
            binary_labels: pairs.len() - soft_labels,
            mean_label: (!pairs.is_empty())
                .then(|| pairs.iter().map(|p| p.soft_label).sum::<f64>() / pairs.len() as f64),
            histogram: LabelHistogram::of(pairs.iter().map(|p| p.soft_label)),
        }
    }
}
