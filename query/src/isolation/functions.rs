//! Bounds on the scalar functions that build values larger than their
//! arguments.
//!
//! DataFusion's memory pool accounts what operators hold (hash tables,
//! sort buffers, accumulators), not the arrays a scalar function returns:
//! `repeat('x', 2000000000)` allocates 2 GB outside any pool, and three of
//! them at once take the process past its container's limit. Each function
//! below is replaced, per session, by a wrapper that works out from its
//! actual arguments an upper bound of what one call (one batch) would
//! build, and refuses the call past `[query] max_function_output_mb`, before
//! anything is allocated. Planning folds constant calls through the same
//! wrapper, so `SELECT repeat('x', 2000000000)` is refused while planning.
//!
//! Functions whose output is bounded by their inputs' size (a small
//! multiple of it: `upper`, `to_hex`, `substr`, …) need no wrapper; the
//! aggregates that grow (`string_agg`, `array_agg`) are accounted by the
//! pool through their accumulators' sizes.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalUnit};
use datafusion::common::Result as DFResult;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    /// `repeat(s, n)`: len(s) × n.
    Repeat,
    /// `lpad`/`rpad(s, n [, fill])`: up to 4 bytes per character of n.
    Pad,
    /// `replace(s, from, to)`: every occurrence of `from` becomes `to`.
    Replace,
    /// `regexp_replace(s, re, to [, flags])`: with `g`, as many matches as
    /// bytes (+1: a pattern may match the empty string).
    RegexpReplace,
    /// `concat`, `concat_ws`, `overlay`, `array_concat`: the sum of the
    /// arguments, each broadcast to every row.
    Sum,
    /// `array_repeat(x, n)`: n elements.
    ArrayRepeat,
    /// `range`/`generate_series(start, stop [, step])`: (stop - start) / step
    /// elements of 8 bytes.
    Series,
    /// `array_resize(a, n [, fill])`: n elements.
    Resize,
}

fn rule_for(name: &str) -> Option<Rule> {
    Some(match name {
        "repeat" => Rule::Repeat,
        "lpad" | "rpad" => Rule::Pad,
        "replace" => Rule::Replace,
        "regexp_replace" => Rule::RegexpReplace,
        "concat" | "concat_ws" | "overlay" | "array_concat" => Rule::Sum,
        "array_repeat" => Rule::ArrayRepeat,
        "range" | "generate_series" => Rule::Series,
        "array_resize" => Rule::Resize,
        _ => return None,
    })
}

/// The output of one call was bounded above the limit.
#[derive(Debug)]
pub struct ValueTooLarge {
    pub function: String,
    pub bytes: u128,
    pub limit: usize,
}

impl fmt::Display for ValueTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}(…) would build about {} MiB in one call, over the limit of {} MiB \
             ([query] max_function_output_mb); use smaller arguments",
            self.function,
            self.bytes >> 20,
            self.limit >> 20
        )
    }
}

impl std::error::Error for ValueTooLarge {}

/// The bounded replacements of every function `functions` holds a rule
/// for, to register in each session over the built-in ones.
pub fn bounded(
    functions: impl IntoIterator<Item = Arc<ScalarUDF>>,
    limit: usize,
) -> Vec<ScalarUDF> {
    functions
        .into_iter()
        .filter_map(|f| {
            let rule = rule_for(f.name())?;
            Some(ScalarUDF::new_from_impl(Bounded {
                inner: UdfEq::from(f.inner().clone()),
                rule,
                limit,
            }))
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    rule: Rule,
    limit: usize,
}

impl Bounded {
    fn check(&self, args: &ScalarFunctionArgs) -> DFResult<()> {
        let bytes = estimate(self.rule, &args.args, args.number_rows.max(1))?;
        // A sum of its arguments is no amplification unless arguments repeat:
        // `concat(message, ' ')` over a batch of large lines only copies what
        // the batch already holds, `concat(s, s, s, …)` multiplies it.
        let copies_inputs = self.rule == Rule::Sum && bytes <= 2 * distinct_input_bytes(&args.args);
        if bytes > self.limit as u128 && !copies_inputs {
            return Err(DataFusionError::External(Box::new(ValueTooLarge {
                function: self.inner.name().to_string(),
                bytes,
                limit: self.limit,
            })));
        }
        Ok(())
    }
}

/// Bytes the arguments of one call hold, each array counted once however
/// many arguments name it.
fn distinct_input_bytes(values: &[ColumnarValue]) -> u128 {
    let mut seen: Vec<*const ()> = Vec::new();
    let mut total = 0u128;
    for v in values {
        match v {
            ColumnarValue::Array(a) => {
                let ptr = Arc::as_ptr(a) as *const ();
                if !seen.contains(&ptr) {
                    seen.push(ptr);
                    total += a.get_array_memory_size() as u128;
                }
            }
            ColumnarValue::Scalar(s) => total += s.size() as u128,
        }
    }
    total
}

/// The arguments of one call, each as an array: a scalar is one row that
/// stands for every row.
struct Args {
    arrays: Vec<ArrayRef>,
    rows: usize,
}

impl Args {
    fn new(values: &[ColumnarValue], rows: usize) -> DFResult<Self> {
        let arrays = values
            .iter()
            .map(|v| match v {
                ColumnarValue::Array(a) => Ok(a.clone()),
                ColumnarValue::Scalar(s) => s.to_array_of_size(1),
            })
            .collect::<DFResult<Vec<_>>>()?;
        // All scalars: one call computes one value.
        let rows = if values.iter().all(|v| matches!(v, ColumnarValue::Scalar(_))) {
            1
        } else {
            rows
        };
        Ok(Self { arrays, rows })
    }

    /// Byte lengths of argument `n` (0 for nulls and non-strings).
    fn lengths(&self, n: usize) -> Vec<u128> {
        let Some(a) = self.arrays.get(n) else {
            return Vec::new();
        };
        let lens = length(a.as_ref())
            .ok()
            .and_then(|l| cast(&l, &DataType::Int64).ok());
        match lens {
            Some(l) => {
                let l = l.as_primitive::<Int64Type>();
                (0..l.len())
                    .map(|i| {
                        if l.is_null(i) {
                            0
                        } else {
                            l.value(i).max(0) as u128
                        }
                    })
                    .collect()
            }
            // Not a string: its memory per row.
            None => {
                let per_row = a.get_array_memory_size() / a.len().max(1);
                vec![per_row as u128; a.len()]
            }
        }
    }

    /// Argument `n` as integers (nulls and what does not cast: 0).
    fn integers(&self, n: usize) -> Vec<i128> {
        let Some(a) = self.arrays.get(n) else {
            return Vec::new();
        };
        let as_int = match a.data_type() {
            DataType::Date32 | DataType::Date64 => cast(
                a,
                &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
            )
            .and_then(|t| cast(&t, &DataType::Int64)),
            _ => cast(a, &DataType::Int64),
        };
        match as_int {
            Ok(v) => {
                let v = v.as_primitive::<Int64Type>();
                (0..v.len())
                    .map(|i| {
                        if v.is_null(i) {
                            0
                        } else {
                            i128::from(v.value(i))
                        }
                    })
                    .collect()
            }
            Err(_) => vec![0; a.len()],
        }
    }

    /// Argument `n` as a step: integers, or an interval in nanoseconds.
    fn steps(&self, n: usize) -> Vec<i128> {
        let Some(a) = self.arrays.get(n) else {
            return Vec::new();
        };
        if let DataType::Interval(IntervalUnit::MonthDayNano) = a.data_type() {
            let v = a.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
            return (0..v.len())
                .map(|i| {
                    if v.is_null(i) {
                        return 0;
                    }
                    let x = v.value(i);
                    i128::from(x.months) * 30 * 86_400_000_000_000
                        + i128::from(x.days) * 86_400_000_000_000
                        + i128::from(x.nanoseconds)
                })
                .collect();
        }
        self.integers(n)
    }

    /// Σ over rows of f(row).
    fn sum(&self, f: impl Fn(usize) -> u128) -> u128 {
        (0..self.rows).fold(0u128, |acc, i| acc.saturating_add(f(i)))
    }
}

fn at<T: Copy + Default>(v: &[T], i: usize) -> T {
    match v.len() {
        0 => T::default(),
        1 => v[0],
        _ => v.get(i).copied().unwrap_or_default(),
    }
}

/// An upper bound of the bytes one call builds.
fn estimate(rule: Rule, values: &[ColumnarValue], rows: usize) -> DFResult<u128> {
    let a = Args::new(values, rows)?;
    let positive = |x: i128| x.max(0) as u128;
    Ok(match rule {
        Rule::Repeat => {
            let (s, n) = (a.lengths(0), a.integers(1));
            a.sum(|i| at(&s, i).saturating_mul(positive(at(&n, i))))
        }
        Rule::Pad => {
            let n = a.integers(1);
            a.sum(|i| positive(at(&n, i)).saturating_mul(4))
        }
        Rule::Replace => {
            let (s, from, to) = (a.lengths(0), a.lengths(1), a.lengths(2));
            a.sum(|i| {
                let occurrences = at(&s, i) / at(&from, i).max(1) + 1;
                occurrences
                    .saturating_mul(at(&to, i))
                    .saturating_add(at(&s, i))
            })
        }
        Rule::RegexpReplace => {
            let (s, to) = (a.lengths(0), a.lengths(2));
            let global = a.arrays.get(3).is_some_and(|flags| {
                flags
                    .as_string_opt::<i32>()
                    .map(|f| f.iter().flatten().any(|f| f.contains('g')))
                    .or_else(|| {
                        flags
                            .as_string_view_opt()
                            .map(|f| f.iter().flatten().any(|f| f.contains('g')))
                    })
                    .unwrap_or(true)
            });
            a.sum(|i| {
                let matches = if global { at(&s, i) + 1 } else { 1 };
                matches.saturating_mul(at(&to, i)).saturating_add(at(&s, i))
            })
        }
        Rule::Sum => {
            // Lists have no string length: `lengths` gives their memory per row.
            let lens: Vec<Vec<u128>> = (0..a.arrays.len()).map(|n| a.lengths(n)).collect();
            a.sum(|i| {
                lens.iter()
                    .map(|l| at(l, i))
                    .fold(0u128, u128::saturating_add)
            })
        }
        Rule::ArrayRepeat => {
            let (x, n) = (a.lengths(0), a.integers(1));
            a.sum(|i| (at(&x, i) + 8).saturating_mul(positive(at(&n, i))))
        }
        Rule::Series => {
            let (start, stop, step) = match a.arrays.len() {
                1 => (vec![0], a.integers(0), vec![1]),
                2 => (a.integers(0), a.integers(1), vec![1]),
                _ => (a.integers(0), a.integers(1), a.steps(2)),
            };
            a.sum(|i| {
                let span = at(&stop, i).abs_diff(at(&start, i));
                let step = at(&step, i).unsigned_abs().max(1);
                (span / step + 1).saturating_mul(8)
            })
        }
        Rule::Resize => {
            let n = a.integers(1);
            a.sum(|i| positive(at(&n, i)).saturating_mul(8))
        }
    })
}

impl ScalarUDFImpl for Bounded {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DFResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DFResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    // `simplify` is not forwarded: a rewrite would name the unbounded
    // built-in again.

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DFResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<(), String> {
        let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
        df.collect().await.map(|_| ()).map_err(|e| e.to_string())
    }

    fn bounded_ctx(limit: usize) -> SessionContext {
        let ctx = SessionContext::new();
        let builtins: Vec<_> = ctx.state().scalar_functions().values().cloned().collect();
        let wrapped = bounded(builtins, limit);
        assert!(wrapped.len() >= 12, "{}", wrapped.len());
        for f in wrapped {
            ctx.register_udf(f);
        }
        ctx
    }

    #[tokio::test]
    async fn growing_functions_are_refused_past_the_bound_and_work_below_it() {
        let ctx = bounded_ctx(1 << 20);
        for sql in [
            "SELECT repeat('x', 2000000000)",
            "SELECT lpad('x', 2000000000)",
            "SELECT rpad('x', 2000000000, 'ab')",
            "SELECT replace(repeat('a', 1000), 'a', repeat('b', 5000))",
            "SELECT regexp_replace(repeat('a', 1000), '', repeat('b', 2000), 'g')",
            "WITH t AS (SELECT repeat('a', 300000) AS s) \
             SELECT length(concat(s, s, s, s, s, s, s, s, s, s)) FROM t",
            "SELECT array_repeat('x', 1000000000)",
            "SELECT range(0, 1000000000000)",
            "SELECT generate_series(1, 1000000000)",
            "SELECT array_resize([1], 1000000000)",
            "SELECT range(TIMESTAMP '2000-01-01', TIMESTAMP '2030-01-01', INTERVAL '1 second')",
            "SELECT length(repeat('x', v)) FROM (VALUES (10), (2000000000)) t(v)",
        ] {
            let e = run(&ctx, sql).await.expect_err(sql);
            assert!(e.contains("max_function_output_mb"), "{sql}: {e}");
        }
        for sql in [
            "SELECT repeat('x', 1000)",
            "SELECT lpad('x', 10, '-')",
            "SELECT replace('aaa', 'a', 'bb')",
            "SELECT regexp_replace('a-b-c', '-', '+', 'g')",
            "SELECT concat('a', 'b', 1)",
            "SELECT length(concat(repeat('a', 600000), repeat('b', 600000)))",
            "SELECT array_repeat(1, 10)",
            "SELECT range(1, 100)",
            "SELECT range(DATE '2020-01-01', DATE '2020-02-01', INTERVAL '1 day')",
            "SELECT length(repeat('x', v)) FROM (VALUES (10), (2000)) t(v)",
        ] {
            run(&ctx, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}
