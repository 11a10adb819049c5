//! Deterministic random rule lists and device inputs for the cross-checks.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::rule::{Access, Kind};

/// splitmix64: small, deterministic, good enough to spread test cases.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

/// Majors and minors rules use; `None` is `*`. The large one checks 32-bit compares.
const MAJORS: [Option<i64>; 4] = [None, Some(1), Some(2), Some(0x8000_0001)];
const MINORS: [Option<i64>; 3] = [None, Some(3), Some(5)];

/// Up to 8 rules over a few devices, so that they overlap often. Type `a` comes
/// as the whole-reset it must be (a narrowed allow-all is refused by parsing).
pub(crate) fn random_rules(rng: &mut Rng) -> Vec<LinuxDeviceCgroup> {
    let len = rng.below(9);
    (0..len).map(|_| random_rule(rng)).collect()
}

fn random_rule(rng: &mut Rng) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(rng.below(2) == 0);
    let typ = rng.pick(&[
        LinuxDeviceType::A,
        LinuxDeviceType::B,
        LinuxDeviceType::C,
        LinuxDeviceType::C,
    ]);
    r.set_typ(Some(typ));
    let access = Access::from_bits(rng.below(7) as u8 + 1);
    if typ == LinuxDeviceType::A {
        r.set_access(Some("rwm".to_owned()));
        return r;
    }
    r.set_major(rng.pick(&MAJORS));
    r.set_minor(rng.pick(&MINORS));
    r.set_access(Some(access.to_string()));
    r
}

/// Every device type, some numbers rules name and some they do not, every access set.
pub(crate) fn inputs() -> impl Iterator<Item = (Kind, u32, u32, Access)> {
    let majors = [0, 1, 2, 0x8000_0001, u32::MAX];
    let minors = [0, 3, 5, u32::MAX];
    [Kind::Block, Kind::Char].into_iter().flat_map(move |kind| {
        majors.into_iter().flat_map(move |major| {
            minors.into_iter().flat_map(move |minor| {
                (0..8).map(move |bits| (kind, major, minor, Access::from_bits(bits)))
            })
        })
    })
}
