//! Classification metrics on predicted probabilities of the positive class: ranking quality
//! (ROC AUC, PR AUC), calibration (log loss, Brier) and decisions at a threshold chosen on
//! validation. Accuracy alone is useless here: always answering "no" scores 0.888.

use serde::{Deserialize, Serialize};

/// Why a metric cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{probabilities} probabilities but {labels} labels")]
    LengthMismatch { probabilities: usize, labels: usize },
    #[error("no rows to score")]
    Empty,
    /// ROC AUC and PR AUC need both classes.
    #[error("all {rows} labels are {label}: the metric needs both classes")]
    OneClass { rows: usize, label: bool },
    #[error("probability {value} at row {row} is not within 0..=1")]
    NotProbability { row: usize, value: f32 },
}

fn check(probabilities: &[f32], labels: &[bool]) -> Result<(), MetricError> {
    if probabilities.len() != labels.len() {
        return Err(MetricError::LengthMismatch {
            probabilities: probabilities.len(),
            labels: labels.len(),
        });
    }
    if probabilities.is_empty() {
        return Err(MetricError::Empty);
    }
    if let Some((row, &value)) = probabilities
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(MetricError::NotProbability { row, value });
    }
    Ok(())
}

fn check_both_classes(labels: &[bool]) -> Result<usize, MetricError> {
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 || positives == labels.len() {
        return Err(MetricError::OneClass {
            rows: labels.len(),
            label: positives > 0,
        });
    }
    Ok(positives)
}

/// Row positions sorted by descending probability.
fn descending(probabilities: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
}

/// Cumulative (true positives, false positives) at each distinct threshold, from the highest
/// probability down: the points of the ROC and precision-recall curves.
fn curve(probabilities: &[f32], labels: &[bool]) -> Vec<(f32, usize, usize)> {
    let order = descending(probabilities);
    let mut points = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // Tied probabilities form one threshold: emit a point only after the last of them.
        let last_of_tie = order
            .get(k + 1)
            .is_none_or(|&next| probabilities[next] != probabilities[i]);
        if last_of_tie {
            points.push((probabilities[i], tp, fp));
        }
    }
    points
}

/// The share of rows whose decision `p >= threshold` equals the label.
pub fn accuracy(
    probabilities: &[f32],
    labels: &[bool],
    threshold: f32,
) -> Result<f64, MetricError> {
    check(probabilities, labels)?;
    let right = probabilities
        .iter()
        .zip(labels)
        .filter(|&(&p, &y)| (p >= threshold) == y)
        .count();
    Ok(ratio(right, labels.len()))
}

#[allow(clippy::cast_precision_loss)]
fn ratio(a: usize, b: usize) -> f64 {
    // Row counts are far below 2^52, so the conversions are exact.
    a as f64 / b as f64
}

/// The area under the ROC curve (ties count half, as in scikit-learn's `roc_auc_score`).
pub fn roc_auc(probabilities: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    check(probabilities, labels)?;
    let positives = check_both_classes(labels)?;
    let negatives = labels.len() - positives;
    let (mut area, mut prev_tp, mut prev_fp) = (0.0f64, 0usize, 0usize);
    for (_, tp, fp) in curve(probabilities, labels) {
        // Trapezoid between consecutive points, in counts; normalised once at the end.
        area += ratio((fp - prev_fp) * (tp + prev_tp), 2);
        (prev_tp, prev_fp) = (tp, fp);
    }
    Ok(area / (positives as f64 * negatives as f64))
}

/// The area under the precision-recall curve as average precision: the mean of precision at each
/// threshold weighted by the recall it adds (scikit-learn's `average_precision_score`).
pub fn pr_auc(probabilities: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    check(probabilities, labels)?;
    let positives = check_both_classes(labels)?;
    let (mut ap, mut prev_tp) = (0.0f64, 0usize);
    for (_, tp, fp) in curve(probabilities, labels) {
        ap += ratio(tp - prev_tp, positives) * ratio(tp, tp + fp);
        prev_tp = tp;
    }
    Ok(ap)
}

/// The clip that keeps `ln` finite for probabilities of exactly 0 or 1.
const LOG_LOSS_EPS: f64 = 1e-15;

/// The mean negative log-likelihood of the labels.
pub fn log_loss(probabilities: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    check(probabilities, labels)?;
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = f64::from(p).clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            -(if y { p.ln() } else { (1.0 - p).ln() })
        })
        .sum();
    Ok(total / labels.len() as f64)
}

/// The mean squared difference between probability and label.
pub fn brier(probabilities: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    check(probabilities, labels)?;
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (f64::from(p) - f64::from(u8::from(y))).powi(2))
        .sum();
    Ok(total / labels.len() as f64)
}

/// Decisions `p >= threshold` compared with the labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AtThreshold {
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn at_counts(threshold: f32, tp: usize, fp: usize, positives: usize) -> AtThreshold {
    // No predicted positives: precision is taken as 0, as scikit-learn does with a warning.
    let precision = if tp + fp == 0 {
        0.0
    } else {
        ratio(tp, tp + fp)
    };
    let recall = if positives == 0 {
        0.0
    } else {
        ratio(tp, positives)
    };
    let f1 = if tp == 0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    AtThreshold {
        threshold,
        precision,
        recall,
        f1,
    }
}

/// Precision, recall and F1 of the decisions `p >= threshold`.
pub fn at_threshold(
    probabilities: &[f32],
    labels: &[bool],
    threshold: f32,
) -> Result<AtThreshold, MetricError> {
    check(probabilities, labels)?;
    let positives = labels.iter().filter(|&&y| y).count();
    let (tp, fp) = probabilities
        .iter()
        .zip(labels)
        .filter(|&(&p, _)| p >= threshold)
        .fold(
            (0, 0),
            |(tp, fp), (_, &y)| if y { (tp + 1, fp) } else { (tp, fp + 1) },
        );
    Ok(at_counts(threshold, tp, fp, positives))
}

/// The threshold with the highest F1 (the highest such threshold when several tie), chosen on
/// validation and then applied unchanged to test and serving.
pub fn best_f1_threshold(
    probabilities: &[f32],
    labels: &[bool],
) -> Result<AtThreshold, MetricError> {
    check(probabilities, labels)?;
    let positives = check_both_classes(labels)?;
    let mut best: Option<AtThreshold> = None;
    for (threshold, tp, fp) in curve(probabilities, labels) {
        let candidate = at_counts(threshold, tp, fp, positives);
        if best.is_none_or(|b| candidate.f1 > b.f1) {
            best = Some(candidate);
        }
    }
    // `check` guarantees at least one row, hence one curve point.
    best.ok_or(MetricError::Empty)
}

/// Every metric of one model on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub rows: usize,
    pub accuracy: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    /// Decisions at the threshold chosen on validation.
    pub decision: AtThreshold,
}

/// All metrics at once; `threshold` should come from [`best_f1_threshold`] on validation.
pub fn report(
    probabilities: &[f32],
    labels: &[bool],
    threshold: f32,
) -> Result<Report, MetricError> {
    Ok(Report {
        rows: labels.len(),
        accuracy: accuracy(probabilities, labels, threshold)?,
        roc_auc: roc_auc(probabilities, labels)?,
        pr_auc: pr_auc(probabilities, labels)?,
        log_loss: log_loss(probabilities, labels)?,
        brier: brier(probabilities, labels)?,
        decision: at_threshold(probabilities, labels, threshold)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: [f32; 6] = [0.9, 0.8, 0.7, 0.6, 0.4, 0.2];
    const Y: [bool; 6] = [true, false, true, false, true, false];

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn roc_auc_by_hand() {
        // Positive scores 0.9, 0.7, 0.4 against negatives 0.8, 0.6, 0.2: pairs won
        // 3 + 2 + 1 = 6 of 9.
        close(roc_auc(&P, &Y).unwrap(), 6.0 / 9.0);
        // A tie between a positive and a negative counts half.
        close(roc_auc(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
        close(
            roc_auc(&[0.5, 0.5, 0.1], &[true, false, false]).unwrap(),
            0.75,
        );
        close(roc_auc(&[0.9, 0.1], &[false, true]).unwrap(), 0.0);
    }

    #[test]
    fn pr_auc_by_hand() {
        // Positives found at ranks 1, 3, 5: precisions 1, 2/3, 3/5, each adding recall 1/3.
        close(pr_auc(&P, &Y).unwrap(), (1.0 + 2.0 / 3.0 + 0.6) / 3.0);
        // Tied scores are one threshold: precision 1/2 at recall 1.
        close(pr_auc(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
    }

    #[test]
    fn log_loss_and_brier_by_hand() {
        let p = [0.8f32, 0.3];
        let y = [true, false];
        let expected = -(f64::from(0.8f32).ln() + (1.0 - f64::from(0.3f32)).ln()) / 2.0;
        close(log_loss(&p, &y).unwrap(), expected);
        let expected = ((1.0 - f64::from(0.8f32)).powi(2) + f64::from(0.3f32).powi(2)) / 2.0;
        close(brier(&p, &y).unwrap(), expected);
        // Certain and wrong is large but finite.
        let worst = log_loss(&[0.0], &[true]).unwrap();
        assert!(worst.is_finite() && worst > 34.0);
    }

    #[test]
    fn threshold_decisions_by_hand() {
        // At 0.65: predicted 0.9, 0.8, 0.7 -> tp 2, fp 1, fn 1.
        let d = at_threshold(&P, &Y, 0.65).unwrap();
        close(d.precision, 2.0 / 3.0);
        close(d.recall, 2.0 / 3.0);
        close(d.f1, 2.0 / 3.0);
        close(accuracy(&P, &Y, 0.65).unwrap(), 4.0 / 6.0);
        // Candidates: 0.9 -> F1 0.5; 0.8 -> 0.4; 0.7 -> 2/3; 0.6 -> 4/7; 0.4 -> 0.75; 0.2 -> 2/3.
        let best = best_f1_threshold(&P, &Y).unwrap();
        assert_eq!(best.threshold, 0.4);
        close(best.f1, 0.75);
        let none = at_threshold(&P, &Y, 0.95).unwrap();
        assert_eq!((none.precision, none.recall, none.f1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            roc_auc(&[0.1], &[true, false]),
            Err(MetricError::LengthMismatch {
                probabilities: 1,
                labels: 2
            })
        );
        assert_eq!(brier(&[], &[]), Err(MetricError::Empty));
        assert_eq!(
            roc_auc(&[0.1, 0.2], &[true, true]),
            Err(MetricError::OneClass {
                rows: 2,
                label: true
            })
        );
        assert_eq!(
            log_loss(&[1.5], &[true]),
            Err(MetricError::NotProbability { row: 0, value: 1.5 })
        );
        assert!(log_loss(&[f32::NAN], &[true]).is_err());
        let r = report(&P, &Y, 0.4).unwrap();
        assert_eq!(r.rows, 6);
        close(r.decision.f1, 0.75);
    }
}
