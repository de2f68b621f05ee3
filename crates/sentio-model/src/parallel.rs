//! Splitting a batch across threads, deterministically.
//!
//! A batch of `B` windows is cut into `n` contiguous shards whose sizes differ by at most one;
//! each shard runs forward and backward on its own thread with its own scratch and gradient
//! buffers, and the caller sums the shards' gradients in shard order. Nothing depends on which
//! thread finishes first, so a seed and a thread count fix the result bit for bit. (Different
//! thread counts sum in a different order, so they agree only to rounding.)

use std::ops::Range;

/// `threads` contiguous shards of `0..batch` (fewer when the batch is smaller), none empty.
pub(crate) fn shards(batch: usize, threads: usize) -> Vec<Range<usize>> {
    let n = threads.clamp(1, batch.max(1));
    let (base, extra) = (batch / n, batch % n);
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let shard = start..start + len;
            start += len;
            shard
        })
        .collect()
}

/// Runs `work(state_i, shard_i)` for every shard: the first on the calling thread, the others
/// on scoped threads. Results come back in shard order; a panic in a worker is resumed here.
pub(crate) fn run<S, R, W>(states: &mut [S], shards: &[Range<usize>], work: W) -> Vec<R>
where
    S: Send,
    R: Send,
    W: Fn(&mut S, Range<usize>) -> R + Sync,
{
    let mut pairs = states.iter_mut().zip(shards.iter().cloned());
    let Some((first_state, first_shard)) = pairs.next() else {
        return Vec::new();
    };
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            pairs.map(|(state, shard)| scope.spawn(move || work(state, shard))).collect();
        let mut results = Vec::with_capacity(shards.len());
        results.push(work(first_state, first_shard));
        for handle in handles {
            match handle.join() {
                Ok(r) => results.push(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch() {
        assert_eq!(shards(10, 3), vec![0..4, 4..7, 7..10]);
        assert_eq!(shards(2, 4), vec![0..1, 1..2]);
        assert_eq!(shards(5, 0), vec![0..5]);
        let mut states = vec![0usize; 3];
        let sums = run(&mut states, &shards(10, 3), |s, r| {
            *s = r.len();
            r.sum::<usize>()
        });
        assert_eq!(sums, vec![6, 15, 24]);
        assert_eq!(states, vec![4, 3, 3]);
    }
}
