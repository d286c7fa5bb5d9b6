//! A bound on the sequences a decoded message may hold, so that what a peer's frame becomes in
//! memory is bounded by its size and a few megabytes, not by many times its size.
//!
//! A frame is bounded in bytes, but a decoded item can take many times the bytes it was sent in:
//! a tombstone version is 8-14 bytes on the wire and 96 in memory, an empty value 1 byte and 24,
//! a clock entry or a run of dots 4-5 bytes and 24-32. A frame of the default bound (tens of
//! megabytes) full of them would take a gigabyte or more to decode. So every sequence of such
//! items (a set's versions, a read's values, a clock's entries, a context's runs) is decoded
//! through [`bounded_vec`], which refuses more items than the bound set by
//! [`with_sequence_max`]: when it reads the sequence's length, if the frame has the bytes for
//! that many items, else at the first item past the bound. Under the default limits (a bound of
//! 256) one message then decodes to at most about 3.7 MB besides its keys' and values' bytes:
//! 256 versions, each with a past of 256 clock entries and 256 runs. The node decodes peer
//! frames under the bound its configuration gives ([`crate::Limits::peer_sequence_max`]) and
//! sends no message with a longer sequence ([`crate::Msg::longest_sequence`]); everything else
//! (the store's own records, the checker) decodes without one.

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

thread_local! {
    /// The bound in force on this thread (see [`with_sequence_max`]).
    static SEQUENCE_MAX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Bytes a bounded sequence reserves before it has seen its items: a length on the wire is a
/// claim, not a proof.
const PREALLOCATED_BYTES_MAX: usize = 64 << 10;

/// Runs `decode` with every bounded sequence limited to `max` items; the bound in force before is
/// back when it returns (or unwinds). For a decode that does not wait: the bound is the thread's.
pub fn with_sequence_max<R>(max: usize, decode: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            SEQUENCE_MAX.with(|m| m.set(self.0));
        }
    }
    let _restore = Restore(SEQUENCE_MAX.with(|m| m.replace(max)));
    decode()
}

/// Decodes a sequence of at most the bound in force (see [`with_sequence_max`]); refuses a longer
/// one when it reads its length, or at the latest at its first item past the bound.
pub fn bounded_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(Bounded(PhantomData))
}

struct Bounded<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let max = SEQUENCE_MAX.with(Cell::get);
        let claimed = seq.size_hint().unwrap_or(0);
        if claimed > max {
            return Err(too_long(claimed, max));
        }
        let item_bytes = std::mem::size_of::<T>().max(1);
        let mut items = Vec::with_capacity(claimed.min(PREALLOCATED_BYTES_MAX / item_bytes));
        while let Some(item) = seq.next_element()? {
            if items.len() == max {
                return Err(too_long(max + 1, max));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// The refusal of a sequence of at least `items` items, over the bound `max`. Kept out of line:
/// it is never taken on the way of a good frame.
#[cold]
#[inline(never)]
fn too_long<E: Error>(items: usize, max: usize) -> E {
    E::custom(format!("a sequence of {items} or more items, over the bound of {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Items(#[serde(deserialize_with = "bounded_vec")] Vec<u32>);

    #[test]
    fn a_sequence_over_the_bound_is_refused_and_the_bound_is_restored() {
        let bytes = postcard::to_stdvec(&Items(vec![7; 5])).expect("encodes");
        let decode = || postcard::from_bytes::<Items>(&bytes);
        assert_eq!(with_sequence_max(5, decode).expect("at the bound"), Items(vec![7; 5]));
        with_sequence_max(4, decode).expect_err("over the bound");
        // Outside the call, no bound.
        assert_eq!(decode().expect("unbounded"), Items(vec![7; 5]));
        assert_eq!(SEQUENCE_MAX.with(Cell::get), usize::MAX);
    }

    #[test]
    fn a_bound_is_restored_when_the_decode_unwinds() {
        let unwound = std::panic::catch_unwind(|| with_sequence_max(3, || panic!("in the decode")));
        assert!(unwound.is_err());
        assert_eq!(SEQUENCE_MAX.with(Cell::get), usize::MAX);
    }
}
