//! `quantiles_cont(x, f1, f2, …)`: several exact quantiles of one column in
//! one aggregate, as a list (`[1]` is the `f1` quantile).
//!
//! Attribution reports p50/p90/p99 per principal. As three
//! `percentile_cont` calls DataFusion keeps three copies of every group's
//! values, ships three list states from the partial to the final
//! aggregation and selects in three copies; this keeps one and selects the
//! quantiles in one pass over shrinking parts of it (DuckDB's
//! `quantile_cont(x, [f1, f2, …])` does the same). Quantiles are DuckDB's
//! and `percentile_cont`'s: linear interpolation between the values at
//! `floor(f·(n-1))` and `ceil(f·(n-1))` of the sorted non-null values; NULL
//! for a group without any.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, PrimitiveArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;

/// The function's SQL name.
pub const NAME: &str = "quantiles_cont";

/// The aggregate, to register in a session.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(QuantilesCont {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct QuantilesCont {
    signature: Signature,
}

fn list_of_f64() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

/// The fractions: every argument after the first, each a literal in [0, 1].
fn fractions(args: &AccumulatorArgs) -> Result<Arc<[f64]>> {
    if args.exprs.len() < 2 {
        return plan_err!("{NAME}(x, f1, f2, …) needs at least one fraction");
    }
    let mut out = Vec::with_capacity(args.exprs.len() - 1);
    for e in &args.exprs[1..] {
        let value = e
            .as_any()
            .downcast_ref::<Literal>()
            .map(|l| l.value().clone());
        let f = match value {
            Some(ScalarValue::Float64(Some(f))) => f,
            Some(ScalarValue::Float32(Some(f))) => f64::from(f),
            Some(ScalarValue::Int64(Some(i))) => i as f64,
            _ => return plan_err!("{NAME}: each fraction must be a number literal, got {e}"),
        };
        if !(0.0..=1.0).contains(&f) {
            return plan_err!("{NAME}: fraction {f} is not between 0 and 1");
        }
        out.push(f);
    }
    Ok(out.into())
}

impl AggregateUDFImpl for QuantilesCont {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(t) if t.is_numeric() || t.is_null() => Ok(list_of_f64()),
            Some(t) => plan_err!("{NAME}: cannot take quantiles of {t}"),
            None => plan_err!("{NAME}(x, f1, f2, …) needs a column and fractions"),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Field::new(format_state_name(args.name, "values"), list_of_f64(), true).into(),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(QuantilesAccumulator {
            fractions: fractions(&args)?,
            values: Vec::new(),
        }))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.is_distinct
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(QuantilesGroups {
            fractions: fractions(&args)?,
            groups: Vec::new(),
        }))
    }
}

/// The input as Float64 (columns of other numeric types are cast).
fn as_f64(array: &ArrayRef) -> Result<PrimitiveArray<Float64Type>> {
    if array.data_type() == &DataType::Float64 {
        return Ok(array.as_primitive::<Float64Type>().clone());
    }
    Ok(cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// The quantiles of `values` (reordered in place), in the order of
/// `fractions`.
pub fn quantiles(values: &mut [f64], fractions: &[f64]) -> Vec<f64> {
    let n = values.len();
    let mut order: Vec<usize> = (0..fractions.len()).collect();
    order.sort_by(|a, b| fractions[*a].total_cmp(&fractions[*b]));
    let mut out = vec![0.0; fractions.len()];
    // Each selection leaves everything from `start` on at or above the
    // value selected, so the next (larger) quantile looks only there.
    let mut start = 0;
    for i in order {
        let index = fractions[i] * (n - 1) as f64;
        let lo = (index.floor() as usize).clamp(start, n - 1);
        let hi = (index.ceil() as usize).min(n - 1);
        let (_, low, above) = values[start..].select_nth_unstable_by(lo - start, f64::total_cmp);
        let low = *low;
        let value = if hi > lo {
            let high = above.iter().copied().min_by(f64::total_cmp).unwrap_or(low);
            low + (high - low) * (index - lo as f64)
        } else {
            low
        };
        out[i] = value;
        start = lo;
    }
    out
}

/// One list of quantiles per group (NULL where a group had no values).
fn quantile_lists(groups: Vec<Vec<f64>>, fractions: &[f64]) -> ListArray {
    let k = fractions.len();
    let mut flat = Vec::with_capacity(groups.len() * k);
    let mut offsets = Vec::with_capacity(groups.len() + 1);
    let mut valid = Vec::with_capacity(groups.len());
    offsets.push(0i32);
    for mut values in groups {
        if values.is_empty() {
            valid.push(false);
        } else {
            valid.push(true);
            flat.extend(quantiles(&mut values, fractions));
        }
        offsets.push(flat.len() as i32);
    }
    ListArray::new(
        Arc::new(Field::new_list_field(DataType::Float64, true)),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Float64Array::from(flat)),
        Some(NullBuffer::from(valid)),
    )
}

/// The groups' values as the state: one list per group.
fn value_lists(groups: Vec<Vec<f64>>) -> Result<ListArray> {
    let mut offsets = Vec::with_capacity(groups.len() + 1);
    offsets.push(0i32);
    let mut total = 0usize;
    for g in &groups {
        total += g.len();
        match i32::try_from(total) {
            Ok(o) => offsets.push(o),
            Err(_) => return exec_err!("{NAME}: more than 2^31 values in one batch of state"),
        }
    }
    let flat: Vec<f64> = groups.into_iter().flatten().collect();
    Ok(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Float64, true)),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Float64Array::from(flat)),
        None,
    ))
}

#[derive(Debug)]
struct QuantilesGroups {
    fractions: Arc<[f64]>,
    groups: Vec<Vec<f64>>,
}

impl GroupsAccumulator for QuantilesGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let input = as_f64(&values[0])?;
        let data = input.values();
        match (input.nulls(), opt_filter) {
            (None, None) => {
                for (&g, &v) in group_indices.iter().zip(data.iter()) {
                    self.groups[g].push(v);
                }
            }
            _ => {
                for (i, &g) in group_indices.iter().enumerate() {
                    let kept = opt_filter.is_none_or(|f| f.is_valid(i) && f.value(i));
                    if kept && input.is_valid(i) {
                        self.groups[g].push(data[i]);
                    }
                }
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        _opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Vec::new);
        let lists = values[0].as_list::<i32>();
        let flat = lists.values().as_primitive::<Float64Type>().values();
        let offsets = lists.value_offsets();
        for (row, &g) in group_indices.iter().enumerate() {
            if lists.is_valid(row) {
                let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
                self.groups[g].extend_from_slice(&flat[from..to]);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = emit_to.take_needed(&mut self.groups);
        Ok(Arc::new(quantile_lists(groups, &self.fractions)))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = emit_to.take_needed(&mut self.groups);
        Ok(vec![Arc::new(value_lists(groups)?)])
    }

    fn size(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.capacity() * size_of::<f64>())
            .sum::<usize>()
            + self.groups.capacity() * size_of::<Vec<f64>>()
    }
}

/// The same for one group (DataFusion uses it where it cannot group, e.g.
/// without GROUP BY).
#[derive(Debug)]
struct QuantilesAccumulator {
    fractions: Arc<[f64]>,
    values: Vec<f64>,
}

impl Accumulator for QuantilesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let input = as_f64(&values[0])?;
        self.values.extend(input.iter().flatten());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = states[0].as_list::<i32>();
        for list in lists.iter().flatten() {
            self.values
                .extend(list.as_primitive::<Float64Type>().iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = value_lists(vec![self.values.clone()])?;
        Ok(vec![ScalarValue::List(Arc::new(list))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let list = quantile_lists(vec![self.values.clone()], &self.fractions);
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.values.capacity() * size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition: sort, then interpolate.
    fn by_sorting(values: &[f64], f: f64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let index = f * (v.len() - 1) as f64;
        let (lo, hi) = (index.floor() as usize, index.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (index - lo as f64)
    }

    #[test]
    fn quantiles_equal_sorting_whatever_the_order_of_fractions() {
        let mut seed = 7u64;
        for n in [1usize, 2, 3, 10, 101, 1000] {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    // Many ties, as latencies in whole milliseconds have.
                    ((seed >> 33) % 50) as f64
                })
                .collect();
            let fractions = [0.99, 0.5, 0.0, 0.9, 1.0, 0.5, 0.25];
            let got = quantiles(&mut values.clone(), &fractions);
            for (f, g) in fractions.iter().zip(got) {
                let want = by_sorting(&values, *f);
                assert!((g - want).abs() < 1e-9, "n={n} f={f}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn empty_groups_are_null_and_nulls_are_skipped() {
        let lists = quantile_lists(vec![vec![], vec![4.0, 1.0, 2.0, 3.0]], &[0.5, 0.9]);
        assert!(lists.is_null(0));
        let second = lists.value(1);
        let v = second.as_primitive::<Float64Type>();
        assert_eq!(v.len(), 2);
        // NULL inputs and filtered-out rows are not values.
        let mut acc = QuantilesGroups {
            fractions: Arc::from(vec![0.5]),
            groups: Vec::new(),
        };
        let input: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.0),
            None,
            Some(3.0),
            Some(100.0),
        ]));
        let keep = BooleanArray::from(vec![true, true, true, false]);
        acc.update_batch(&[input], &[0, 0, 0, 0], Some(&keep), 1)
            .unwrap();
        let out = acc.evaluate(EmitTo::All).unwrap();
        let out = out.as_list::<i32>().value(0);
        assert_eq!(out.as_primitive::<Float64Type>().value(0), 2.0);
        assert!((v.value(0) - 2.5).abs() < 1e-12 && (v.value(1) - 3.7).abs() < 1e-12);
    }
}
