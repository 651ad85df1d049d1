use proptest::prelude::*;

use super::*;

fn limits() -> RateLimits {
    RateLimits {
        min: 1_000,
        max: 100_000,
        loss_permille: 100,
        patience: 3,
    }
}

/// Chunks of the given lengths with bytes that differ by chunk and position.
fn image(lens: &[u64]) -> Vec<Vec<u8>> {
    lens.iter()
        .enumerate()
        .map(|(c, &len)| (0..len).map(|i| (i as usize * 7 + c * 13) as u8).collect())
        .collect()
}

fn data_packet(seq: u32, chunks: &[Vec<u8>], chunk: u32, block: u32) -> Packet {
    let bytes = &chunks[chunk as usize];
    Packet {
        session: 9,
        body: Body::Data {
            seq,
            chunk,
            block,
            blocks: blocks_of(bytes.len() as u64),
            payload: bytes[block_range(bytes.len() as u64, block)].to_vec(),
        },
    }
}

/// A session run in memory: every request goes through the codec to the scheduler, every
/// block through the codec to each receiver, and `lost(receiver, seq)` drops a datagram for
/// one receiver. Receivers listed in `late` join after `late_after` datagrams. Returns what
/// each receiver wrote and the number of DATA datagrams sent.
fn run(
    lens: &[u64],
    receivers: usize,
    late: &[usize],
    late_after: u32,
    mut lost: impl FnMut(usize, u32) -> bool,
) -> (Vec<Vec<Option<Vec<u8>>>>, u32, Scheduler) {
    let chunks = image(lens);
    let mut sched = Scheduler::new(
        lens.to_vec(),
        RateLimits {
            patience: u32::MAX,
            ..limits()
        },
    );
    let mut rx: Vec<Receiver> = (0..receivers)
        .map(|i| Receiver::new(i as u32, lens.to_vec(), &[], 4))
        .collect();
    let mut out = vec![vec![None; lens.len()]; receivers];
    let mut seq = 0u32;
    let mut fell_back = vec![false; receivers];
    for _round in 0..200 {
        for (i, r) in rx.iter_mut().enumerate() {
            if late.contains(&i) && seq < late_after || fell_back[i] {
                continue;
            }
            for req in r.requests() {
                let wire = Packet {
                    session: 9,
                    body: Body::Request(req),
                }
                .encode();
                let Body::Request(req) = Packet::decode(&wire).unwrap().body else {
                    panic!("not a request");
                };
                sched.on_request(&req);
            }
        }
        if sched.is_over() && sched.members() == receivers {
            break;
        }
        while let Some(send) = sched.next_action() {
            let (chunk, block) = match send {
                Action::Block { chunk, block } => (chunk, block),
                Action::Fallback { receiver } => {
                    fell_back[receiver as usize] = true;
                    continue;
                }
            };
            let wire = data_packet(seq, &chunks, chunk, block).encode();
            for (i, r) in rx.iter_mut().enumerate() {
                if late.contains(&i) && seq < late_after || lost(i, seq) {
                    continue;
                }
                let Body::Data {
                    seq,
                    chunk,
                    block,
                    blocks,
                    payload,
                } = Packet::decode(&wire).unwrap().body
                else {
                    panic!("not data");
                };
                if let Some(bytes) = r.on_data(seq, chunk, block, blocks, &payload).unwrap() {
                    assert!(out[i][chunk as usize].is_none(), "a chunk handed out twice");
                    out[i][chunk as usize] = Some(bytes);
                    r.written(chunk);
                }
            }
            seq += 1;
        }
    }
    (out, seq, sched)
}

fn arb_request() -> impl Strategy<Value = Request> {
    (
        any::<u32>(),
        0u16..=1000,
        prop::collection::vec((0u32..1000, 1u32..50), 0..MAX_RANGES),
        prop::option::of((any::<u32>(), prop::collection::vec(any::<u8>(), 1..200))),
    )
        .prop_map(|(receiver, loss_permille, ranges, partial)| Request {
            receiver,
            loss_permille,
            chunks: ranges.into_iter().map(|(s, n)| (s, s + n)).collect(),
            partial,
        })
}

fn arb_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            0u32..100,
            prop::collection::vec(any::<u8>(), 1..=BLOCK)
        )
            .prop_map(|(seq, chunk, block, payload)| Body::Data {
                seq,
                chunk,
                block,
                blocks: block + 1,
                payload
            }),
        arb_request().prop_map(Body::Request),
        (any::<[u8; 32]>(), any::<u32>(), any::<u64>()).prop_map(|(index_sha256, chunks, rate)| {
            Body::Announce(Announce {
                index_sha256,
                chunks,
                rate,
            })
        }),
        any::<u32>().prop_map(|receiver| Body::Fallback { receiver }),
        Just(Body::End),
    ]
}

proptest! {
    #[test]
    fn every_packet_round_trips(session in any::<u32>(), body in arb_body()) {
        let p = Packet { session, body };
        let wire = p.encode();
        prop_assert!(wire.len() <= MAX_DATAGRAM);
        prop_assert_eq!(Packet::decode(&wire), Ok(p));
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(b in prop::collection::vec(any::<u8>(), 0..1600)) {
        let _ = Packet::decode(&b);
    }

    #[test]
    fn random_fields_after_a_good_header_never_panic_the_decoder(
        kind in 0u8..8,
        rest in prop::collection::vec(any::<u8>(), 0..1400),
    ) {
        let mut b = MAGIC.to_vec();
        b.push(VERSION);
        b.push(kind);
        b.extend_from_slice(&[1, 2, 3, 4]);
        b.extend_from_slice(&rest);
        let _ = Packet::decode(&b);
    }

    #[test]
    fn a_truncated_packet_other_than_data_is_refused(session in any::<u32>(), body in arb_body(), cut in 1usize..40) {
        let wire = Packet { session, body }.encode();
        let cut = cut.min(wire.len());
        // A DATA payload can lose bytes and still decode (its block length is checked by
        // the receiver against the index); anything else cannot.
        if let Ok(p) = Packet::decode(&wire[..wire.len() - cut]) {
            let kept = matches!(p.body, Body::Data { .. });
            prop_assert!(kept, "decoded a cut packet");
        }
    }

    #[test]
    fn random_data_never_panics_the_receiver(
        fields in prop::collection::vec(
            (any::<u32>(), 0u32..6, 0u32..8, 0u32..8, prop::collection::vec(any::<u8>(), 0..1500)),
            0..60,
        ),
    ) {
        let mut r = Receiver::new(1, vec![3000, 1, 1400, 5000, 10], &[], 2);
        for (seq, chunk, block, blocks, payload) in fields {
            let _ = r.on_data(seq, chunk, block, blocks, &payload);
            let _ = r.requests();
        }
    }

    #[test]
    fn random_requests_never_panic_the_scheduler(reqs in prop::collection::vec(arb_request(), 0..20)) {
        let mut s = Scheduler::new(vec![3000, 1, 1400, 100_000], limits());
        for r in &reqs {
            s.on_request(r);
            for _ in 0..20 {
                s.next_action();
            }
            prop_assert!(s.rate() >= limits().min && s.rate() <= limits().max);
        }
    }

    #[test]
    fn every_receiver_gets_every_chunk_whatever_it_loses(
        lens in prop::collection::vec(1u64..9000, 1..12),
        receivers in 1usize..5,
        seed in any::<u64>(),
        loss_percent in 0u64..30,
    ) {
        let chunks = image(&lens);
        let mut state = seed | 1;
        let (out, _, _) = run(&lens, receivers, &[], 0, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 100 < loss_percent
        });
        for got in out {
            let got: Vec<Vec<u8>> = got.into_iter().map(|c| c.expect("every chunk")).collect();
            prop_assert_eq!(&got, &chunks);
        }
    }
}

#[test]
fn each_block_is_sent_once_however_many_receivers_ask() {
    let lens = [5000u64, 1400, 1, 7000];
    let blocks: u32 = lens.iter().map(|l| blocks_of(*l)).sum();
    let (out, sent, sched) = run(&lens, 8, &[], 0, |_, _| false);
    assert_eq!(sent, blocks);
    assert!(out.iter().all(|r| r.iter().all(Option::is_some)));
    assert_eq!(sched.finished(), 8);
    assert!(sched.is_over());
}

#[test]
fn a_late_receiver_gets_what_it_missed_after_the_rest() {
    let lens = vec![4000u64; 10];
    let blocks: u32 = lens.iter().map(|l| blocks_of(*l)).sum();
    let chunks = image(&lens);
    // Receiver 2 joins after half of the image went out.
    let (out, sent, _) = run(&lens, 3, &[2], blocks / 2, |_, _| false);
    for r in &out {
        let got: Vec<Vec<u8>> = r.iter().map(|c| c.clone().unwrap()).collect();
        assert_eq!(got, chunks);
    }
    // The first half is repeated once for the late receiver, and no more.
    assert!(sent > blocks && sent <= blocks + blocks / 2 + 3, "{sent}");
}

#[test]
fn only_the_lost_blocks_of_a_chunk_are_sent_again() {
    let lens = [14_000u64];
    // Receiver 0 loses the datagrams 3 and 7 of the first round.
    let (out, sent, _) = run(&lens, 2, &[], 0, |r, seq| r == 0 && (seq == 3 || seq == 7));
    assert!(out.iter().all(|r| r[0].is_some()));
    assert_eq!(sent, 10 + 2);
}

#[test]
fn a_receiver_asks_for_missing_blocks_by_bitmap_and_whole_chunks_by_range() {
    let lens = vec![2800u64, 2800, 2800, 2800];
    let chunks = image(&lens);
    let mut r = Receiver::new(5, lens.clone(), &[false, true, false, false], 4);
    let d = |c: u32, b: u32| {
        let Body::Data { payload, .. } = data_packet(0, &chunks, c, b).body else {
            unreachable!()
        };
        payload
    };
    assert_eq!(r.on_data(0, 2, 1, 2, &d(2, 1)), Ok(None));
    assert_eq!(r.on_data(1, 3, 0, 2, &d(3, 0)), Ok(None));
    assert_eq!(r.on_data(2, 3, 1, 2, &d(3, 1)), Ok(Some(chunks[3].clone())));
    r.written(3);
    let reqs = r.requests();
    assert_eq!(
        reqs,
        vec![
            Request {
                receiver: 5,
                loss_permille: 0,
                chunks: vec![(0, 1)],
                partial: None,
            },
            Request {
                receiver: 5,
                loss_permille: 0,
                chunks: vec![],
                partial: Some((2, vec![0b01])),
            },
        ]
    );
    assert_eq!(r.remaining(), 2);
}

#[test]
fn repairs_of_partly_received_chunks_go_before_the_rest_of_the_round() {
    let lens = vec![2800u64; 6];
    let mut s = Scheduler::new(lens, limits());
    s.on_request(&Request {
        receiver: 1,
        loss_permille: 0,
        chunks: vec![(0, 6)],
        partial: None,
    });
    // Chunks 0 and 1 went out; receiver 2 lost block 1 of chunk 0.
    for _ in 0..4 {
        s.next_action();
    }
    s.on_request(&Request {
        receiver: 2,
        loss_permille: 0,
        chunks: vec![(2, 6)],
        partial: Some((0, vec![0b10])),
    });
    assert_eq!(s.next_action(), Some(Action::Block { chunk: 0, block: 1 }));
    assert_eq!(s.next_action(), Some(Action::Block { chunk: 2, block: 0 }));
}

#[test]
fn a_complete_receiver_says_it_is_done() {
    let mut r = Receiver::new(1, vec![10, 20], &[true, true], 4);
    assert!(r.is_complete());
    let reqs = r.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].is_done());
}

#[test]
fn a_chunk_that_fails_its_check_is_asked_for_again_whole() {
    let lens = vec![1500u64];
    let chunks = image(&lens);
    let mut r = Receiver::new(1, lens, &[], 4);
    r.on_data(0, 0, 0, 2, &chunks[0][..1400]).unwrap();
    assert!(r.on_data(1, 0, 1, 2, &chunks[0][1400..]).unwrap().is_some());
    r.rejected(0);
    assert_eq!(r.requests()[0].chunks, vec![(0, 1)]);
    assert!(!r.is_complete());
}

#[test]
fn data_of_the_wrong_shape_is_refused_with_its_reason() {
    let mut r = Receiver::new(1, vec![1500], &[], 4);
    assert_eq!(
        r.on_data(0, 1, 0, 1, &[0; 10]),
        Err(DataError::NoSuchChunk(1))
    );
    assert_eq!(
        r.on_data(0, 0, 0, 3, &[0; 1400]),
        Err(DataError::Blocks {
            chunk: 0,
            expected: 2,
            found: 3
        })
    );
    assert_eq!(
        r.on_data(0, 0, 6, 2, &[]),
        Err(DataError::NoSuchBlock { chunk: 0, block: 6 })
    );
    assert_eq!(
        r.on_data(0, 0, 1, 2, &[0; 1400]),
        Err(DataError::BlockLength {
            chunk: 0,
            block: 1,
            expected: 100,
            found: 1400
        })
    );
}

#[test]
fn partly_received_chunks_beyond_the_limit_are_dropped_and_asked_for_again() {
    let lens = vec![2800u64; 4];
    let chunks = image(&lens);
    let mut r = Receiver::new(1, lens, &[], 2);
    for c in 0..4u32 {
        r.on_data(c, c, 0, 2, &chunks[c as usize][..1400]).unwrap();
    }
    let reqs = r.requests();
    assert_eq!(reqs[0].chunks, vec![(2, 4)]);
    assert_eq!(reqs.len(), 3, "two partial chunks: {reqs:?}");
}

#[test]
fn the_receiver_measures_its_loss_from_the_sequence_numbers() {
    let lens = vec![1400u64 * 10];
    let chunks = image(&lens);
    let mut r = Receiver::new(1, lens, &[], 2);
    for (seq, b) in [(0u32, 0u32), (1, 1), (4, 2), (9, 3)] {
        let range = block_range(chunks[0].len() as u64, b);
        r.on_data(seq, 0, b, 10, &chunks[0][range]).unwrap();
    }
    // 4 of the 10 datagrams 0..=9 arrived.
    assert_eq!(r.requests()[0].loss_permille, 600);
    // Counting starts again after a request.
    assert_eq!(r.requests()[0].loss_permille, 0);
}

#[test]
fn the_rate_falls_under_loss_and_recovers_within_its_limits() {
    let mut s = Scheduler::new(vec![1000], limits());
    assert_eq!(s.rate(), 100_000);
    let req = |receiver, loss_permille| Request {
        receiver,
        loss_permille,
        chunks: vec![(0, 1)],
        partial: None,
    };
    s.on_request(&req(1, 300));
    assert_eq!(s.rate(), 80_000);
    for _ in 0..100 {
        s.on_request(&req(1, 0));
    }
    assert_eq!(s.rate(), 100_000);
}

#[test]
fn a_receiver_that_keeps_losing_at_the_minimum_rate_is_told_to_continue_over_http() {
    let mut s = Scheduler::new(vec![1000], limits());
    let req = |receiver, loss_permille| Request {
        receiver,
        loss_permille,
        chunks: vec![(0, 1)],
        partial: None,
    };
    s.on_request(&req(2, 0));
    for _ in 0..40 {
        s.on_request(&req(7, 900));
    }
    assert_eq!(s.next_action(), Some(Action::Fallback { receiver: 7 }));
    assert_eq!(s.fell_back(), 1);
    // Its later requests no longer count, and the rate is free to rise for the others.
    s.on_request(&req(7, 900));
    for _ in 0..200 {
        s.on_request(&req(2, 0));
    }
    assert_eq!(s.rate(), 100_000);
    s.on_request(&Request {
        receiver: 2,
        loss_permille: 0,
        chunks: vec![],
        partial: None,
    });
    assert!(s.is_over());
}

#[test]
fn another_version_is_named_and_another_magic_refused() {
    let mut wire = Packet {
        session: 1,
        body: Body::End,
    }
    .encode();
    wire[4] = 2;
    assert_eq!(
        Packet::decode(&wire),
        Err(PacketError::Version { found: 2 })
    );
    wire[0] = b'X';
    assert_eq!(Packet::decode(&wire), Err(PacketError::Magic));
}

#[test]
fn malformed_fields_are_refused_with_a_reason() {
    let data = |block, blocks, payload: Vec<u8>| {
        Packet {
            session: 1,
            body: Body::Data {
                seq: 0,
                chunk: 0,
                block,
                blocks,
                payload,
            },
        }
        .encode()
    };
    assert!(matches!(
        Packet::decode(&data(3, 3, vec![1])),
        Err(PacketError::Malformed(_))
    ));
    assert!(matches!(
        Packet::decode(&data(0, 1, vec![])),
        Err(PacketError::Malformed(_))
    ));
    let mut end = Packet {
        session: 1,
        body: Body::End,
    }
    .encode();
    end.push(0);
    assert_eq!(Packet::decode(&end), Err(PacketError::Trailing(1)));
}

#[test]
fn a_request_while_data_keeps_coming_asks_only_for_what_the_stream_passed() {
    // Six chunks of two blocks, the stream at chunk 3 block 0: chunk 0 came, block 0 of
    // chunk 1 and all of chunk 2 were lost; chunk 3's block 1 and chunks 4 and 5 are still
    // on their way (queued in the socket) or to come.
    let lens = vec![2800u64; 6];
    let chunks = image(&lens);
    let mut r = Receiver::new(7, lens, &[], 4);
    let mut take = |seq: u32, c: u32, b: u32| {
        let range = block_range(2800, b);
        r.on_data(seq, c, b, 2, &chunks[c as usize][range]).unwrap()
    };
    assert!(take(0, 0, 0).is_none());
    assert!(take(1, 0, 1).is_some());
    assert!(take(3, 1, 1).is_none());
    assert!(take(7, 3, 0).is_none());
    r.written(0);
    let reqs = r.requests_passed();
    assert_eq!(
        reqs,
        vec![
            Request {
                receiver: 7,
                loss_permille: 500,
                chunks: vec![(2, 3)],
                partial: None,
            },
            Request {
                receiver: 7,
                loss_permille: 500,
                chunks: vec![],
                partial: Some((1, vec![0b01])),
            },
        ]
    );
    // Once the socket is drained, everything lacking is asked for.
    let all = r.requests();
    assert_eq!(all[0].chunks, vec![(2, 3), (4, 6)]);
    assert_eq!(all.len(), 3, "chunks 1 and 3 by bitmap: {all:?}");
    assert_eq!(all[2].partial, Some((3, vec![0b10])));
}

#[test]
fn a_request_while_data_keeps_coming_is_not_sent_when_nothing_was_passed_and_keeps_the_loss() {
    let lens = vec![1400u64 * 4, 1400];
    let chunks = image(&lens);
    let mut r = Receiver::new(1, lens, &[], 4);
    let take = |r: &mut Receiver, seq: u32, b: u32| {
        let range = block_range(1400 * 4, b);
        r.on_data(seq, 0, b, 4, &chunks[0][range]).unwrap();
    };
    // Blocks 0 and 1 of chunk 0 (datagrams 1 and 2, of another chunk, were lost): nothing
    // behind the stream is missing, so no request (an empty one would say "done").
    take(&mut r, 0, 0);
    take(&mut r, 3, 1);
    assert_eq!(r.requests_passed(), vec![]);
    // Block 3 passes block 2 by; the request carries the loss of all five datagrams.
    take(&mut r, 4, 3);
    let reqs = r.requests_passed();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].partial, Some((0, vec![0b0100])));
    assert_eq!(reqs[0].loss_permille, 400);
}

#[test]
fn a_complete_receiver_says_it_is_done_while_data_keeps_coming() {
    let lens = vec![1400u64];
    let chunks = image(&lens);
    let mut r = Receiver::new(1, lens, &[], 4);
    assert!(r.on_data(0, 0, 0, 1, &chunks[0]).unwrap().is_some());
    r.written(0);
    let reqs = r.requests_passed();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].is_done());
}

#[test]
fn a_receiver_that_asks_only_for_what_the_stream_passed_still_gets_every_chunk() {
    // Two receivers, one losing every third datagram, each asking only for what the stream
    // passed until nothing more comes, then for everything.
    let lens = vec![5000u64, 2800, 1400, 4200];
    let chunks = image(&lens);
    let mut sched = Scheduler::new(lens.clone(), limits());
    let mut rx: Vec<Receiver> = (0..2)
        .map(|i| Receiver::new(i, lens.clone(), &[], 4))
        .collect();
    for r in &mut rx {
        for q in r.requests() {
            sched.on_request(&q);
        }
    }
    let mut seq = 0u32;
    let mut sent = 0;
    for _round in 0..20 {
        let mut n = 0;
        while let Some(Action::Block { chunk, block }) = sched.next_action() {
            seq += 1;
            n += 1;
            let Body::Data {
                payload, blocks, ..
            } = data_packet(seq, &chunks, chunk, block).body
            else {
                unreachable!()
            };
            for (i, r) in rx.iter_mut().enumerate() {
                if i == 1 && seq % 3 == 0 {
                    continue;
                }
                if let Some(bytes) = r.on_data(seq, chunk, block, blocks, &payload).unwrap() {
                    assert_eq!(bytes, chunks[chunk as usize]);
                    r.written(chunk);
                }
            }
            if n % 2 == 0 {
                for r in &mut rx {
                    for q in r.requests_passed() {
                        sched.on_request(&q);
                    }
                }
            }
        }
        sent += n;
        for r in &mut rx {
            for q in r.requests() {
                sched.on_request(&q);
            }
        }
        if sched.is_over() {
            break;
        }
    }
    assert!(rx.iter().all(Receiver::is_complete));
    assert!(sched.is_over());
    assert!(sent > 0);
}

#[test]
fn many_receivers_reporting_the_same_loss_slow_the_sender_once() {
    let mut s = Scheduler::new(vec![1000], limits());
    let req = |receiver, loss_permille| Request {
        receiver,
        loss_permille,
        chunks: vec![(0, 1)],
        partial: None,
    };
    for r in 0..4 {
        s.on_request(&req(r, 0));
    }
    assert_eq!(s.rate(), 100_000);
    // Four receivers lost the same burst: one slow-down, not four.
    for r in 0..4 {
        s.on_request(&req(r, 300));
    }
    assert_eq!(s.rate(), 80_000);
    // A loss measured wholly at the new rate slows down again.
    s.on_request(&req(2, 300));
    assert_eq!(s.rate(), 64_000);
    // Receiver 0's report since the first slow-down spans the second: no third.
    s.on_request(&req(0, 300));
    assert_eq!(s.rate(), 64_000);
    s.on_request(&req(0, 300));
    assert_eq!(s.rate(), 51_200);
}
