//! Accumulators that merge the shards' partial aggregates of one group, and HAVING evaluation
//! on a merged row.

use std::cmp::Ordering;

use super::value::{
    Cell, ColumnType, Decimal, compare_decimal_text, compare_values, float_text, parse_f64,
};
use super::{CmpOp, Literal, MergeError};

/// How an aggregate column merges, with positions resolved to column indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Function {
    Count,
    Sum,
    Min,
    Max,
    /// The column holds the shards' `SUM(x)`; `count` is the column of their `COUNT(x)`.
    Avg {
        count: usize,
    },
}

/// One aggregate column's merged state for one group.
#[derive(Clone, Debug)]
pub(super) enum Acc {
    Count(i128),
    /// Exact sum of integers or decimals; `None` while every value was NULL.
    Decimal(Option<Decimal>),
    Float(Option<f64>),
    Min(Cell),
    Max(Cell),
}

impl Acc {
    pub(super) fn new(function: Function, ty: ColumnType) -> Acc {
        match function {
            Function::Count => Acc::Count(0),
            Function::Sum | Function::Avg { .. } => match ty {
                ColumnType::Int | ColumnType::UInt | ColumnType::Decimal => Acc::Decimal(None),
                // MySQL sums strings and dates as DOUBLE.
                ColumnType::Float | ColumnType::Bytes | ColumnType::Temporal | ColumnType::Time => {
                    Acc::Float(None)
                }
            },
            Function::Min => Acc::Min(None),
            Function::Max => Acc::Max(None),
        }
    }

    /// Folds one shard's partial value (of column `column`, type `ty`) in.
    pub(super) fn add(
        &mut self,
        cell: &Cell,
        ty: ColumnType,
        column: usize,
    ) -> Result<(), MergeError> {
        let Some(value) = cell else {
            return Ok(());
        };
        let bad = |reason| MergeError::BadValue { column, reason };
        match self {
            Acc::Count(total) => {
                let count = Decimal::parse(value)
                    .filter(|d| d.scale == 0)
                    .ok_or_else(|| bad("a COUNT that is not an integer"))?;
                *total = total
                    .checked_add(count.mantissa)
                    .ok_or_else(|| bad("the count overflows"))?;
            }
            Acc::Decimal(sum) => {
                let value = Decimal::parse(value)
                    .ok_or_else(|| bad("not a decimal of at most 38 digits"))?;
                *sum = Some(match sum {
                    Some(s) => s
                        .checked_add(value)
                        .ok_or_else(|| bad("the sum exceeds 38 digits"))?,
                    None => value,
                });
            }
            Acc::Float(sum) => {
                let value = parse_f64(value).ok_or_else(|| bad("not a number"))?;
                *sum = Some(sum.unwrap_or(0.0) + value);
            }
            Acc::Min(best) => {
                if best
                    .as_deref()
                    .is_none_or(|b| compare_values(ty, value, b) == Ordering::Less)
                {
                    *best = Some(value.clone());
                }
            }
            Acc::Max(best) => {
                if best
                    .as_deref()
                    .is_none_or(|b| compare_values(ty, value, b) == Ordering::Greater)
                {
                    *best = Some(value.clone());
                }
            }
        }
        Ok(())
    }

    /// The merged value of a COUNT, SUM, MIN or MAX.
    pub(super) fn value(&self) -> Cell {
        match self {
            Acc::Count(n) => Some(n.to_string().into_bytes()),
            Acc::Decimal(sum) => sum.map(Decimal::to_text),
            Acc::Float(sum) => sum.map(float_text),
            Acc::Min(v) | Acc::Max(v) => v.clone(),
        }
    }

    /// The merged AVG: this sum over `count` values; NULL when there were none. A decimal
    /// average has 4 more fraction digits than the sum (MySQL's `div_precision_increment`).
    pub(super) fn average(&self, count: &Acc, column: usize) -> Result<Cell, MergeError> {
        let n = match count {
            Acc::Count(n) => *n,
            _ => 0,
        };
        if n == 0 {
            return Ok(None);
        }
        match self {
            Acc::Decimal(Some(sum)) => sum
                .checked_div(n, sum.scale + 4)
                .map(|avg| Some(avg.to_text()))
                .ok_or(MergeError::BadValue {
                    column,
                    reason: "the average exceeds 38 digits",
                }),
            // Exact for counts below 2^53, far beyond any result set.
            #[allow(clippy::cast_precision_loss)]
            Acc::Float(Some(sum)) => Ok(Some(float_text(sum / n as f64))),
            _ => Ok(None),
        }
    }
}

/// A HAVING condition with resolved column indexes.
#[derive(Clone, Debug)]
pub(super) enum Condition {
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Compare {
        column: usize,
        op: CmpOp,
        value: Literal,
    },
}

impl Condition {
    /// SQL's three-valued result on `row` (`None` = unknown).
    pub(super) fn eval(&self, row: &[Cell], types: &[ColumnType]) -> Option<bool> {
        match self {
            Condition::And(a, b) => match (a.eval(row, types), b.eval(row, types)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Condition::Or(a, b) => match (a.eval(row, types), b.eval(row, types)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Condition::Not(a) => a.eval(row, types).map(|v| !v),
            Condition::Compare { column, op, value } => {
                let cell = row.get(*column)?.as_deref()?;
                let ty = types.get(*column).copied().unwrap_or(ColumnType::Bytes);
                let ordering = compare_literal(ty, cell, value)?;
                Some(match op {
                    CmpOp::Eq => ordering == Ordering::Equal,
                    CmpOp::NotEq => ordering != Ordering::Equal,
                    CmpOp::Lt => ordering == Ordering::Less,
                    CmpOp::LtEq => ordering != Ordering::Greater,
                    CmpOp::Gt => ordering == Ordering::Greater,
                    CmpOp::GtEq => ordering != Ordering::Less,
                })
            }
        }
    }
}

/// Compares a value of type `ty` with a literal the way MySQL converts them: numbers
/// numerically (exactly for integers and decimals), strings byte-wise.
fn compare_literal(ty: ColumnType, cell: &[u8], literal: &Literal) -> Option<Ordering> {
    let as_f64 = |a: &[u8], b: &[u8]| Some(parse_f64(a)?.total_cmp(&parse_f64(b)?));
    match literal {
        Literal::Null => None,
        Literal::Number(n) => {
            let n = n.as_bytes();
            match ty {
                ColumnType::Int | ColumnType::UInt | ColumnType::Decimal => {
                    compare_decimal_text(cell, n).or_else(|| as_f64(cell, n))
                }
                _ => as_f64(cell, n).or_else(|| Some(cell.cmp(n))),
            }
        }
        Literal::Str(s) => match ty {
            ColumnType::Bytes | ColumnType::Temporal => Some(cell.cmp(s.as_slice())),
            ColumnType::Time => Some(compare_values(ty, cell, s)),
            _ => as_f64(cell, s).or_else(|| Some(cell.cmp(s.as_slice()))),
        },
    }
}
