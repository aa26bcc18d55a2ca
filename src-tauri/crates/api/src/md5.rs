//! MD5 of several messages side by side, in the lanes of SIMD registers
//! (`md5-many` picks SSE2, AVX2 or AVX-512 at run time).
//!
//! It is fast only with a full register: on the machines Opptak is measured
//! on, 8 messages hash at 0.22 CPU-s/GiB, while 4 cost 0.87 per byte, 2
//! cost 1.33 (no better than one at a time) and 5–7 cost 4–6. So a batch of
//! 2 to 7 is filled up to 8 with copies of its first message, whose results
//! are thrown away: 4 parts then cost 0.44 per byte, 2 cost 0.88.

use std::sync::OnceLock;

use md5_many::Md5Many;
pub use md5_many::Md5State;

/// Messages a batch is filled up to.
pub const FULL_BATCH: usize = 8;

fn engine() -> Md5Many {
    static ENGINE: OnceLock<Md5Many> = OnceLock::new();
    *ENGINE.get_or_init(Md5Many::new)
}

/// Appends `inputs[i]` to `states[i]`, for every `i` at once.
///
/// # Panics
///
/// When `states` and `inputs` differ in length.
pub fn update_many(states: &mut [Md5State], inputs: &[&[u8]]) {
    assert_eq!(states.len(), inputs.len(), "one input per state");
    if !(2..FULL_BATCH).contains(&states.len()) {
        engine().update_many(states, inputs);
        return;
    }
    let mut filled_states = [states[0]; FULL_BATCH];
    filled_states[..states.len()].copy_from_slice(states);
    let mut filled_inputs = [inputs[0]; FULL_BATCH];
    filled_inputs[..inputs.len()].copy_from_slice(inputs);
    engine().update_many(&mut filled_states, &filled_inputs);
    states.copy_from_slice(&filled_states[..states.len()]);
}

/// The digest of each state (which stays as it is).
pub fn finalize_many(states: &[Md5State]) -> Vec<[u8; 16]> {
    let mut digests = vec![[0u8; 16]; states.len()];
    engine().finalize_many(states, &mut digests);
    digests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_batch_size_agrees_with_md5_one_message_at_a_time() {
        let messages: Vec<Vec<u8>> =
            (0..17).map(|i| (0..64 * 40 + i * 3).map(|byte| (byte * 31 + i) as u8).collect()).collect();
        for count in 1..=messages.len() {
            let mut states = vec![Md5State::new(); count];
            // Two updates: whole 64-byte blocks, then the rest.
            let heads: Vec<&[u8]> = messages[..count].iter().map(|message| &message[..64 * 20]).collect();
            update_many(&mut states, &heads);
            let tails: Vec<&[u8]> = messages[..count].iter().map(|message| &message[64 * 20..]).collect();
            update_many(&mut states, &tails);
            for (message, digest) in messages.iter().zip(finalize_many(&states)) {
                assert_eq!(digest, md5_many::md5(message), "{count} messages");
            }
        }
    }
}
