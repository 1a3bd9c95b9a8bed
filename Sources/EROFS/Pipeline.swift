import Foundation

/// Runs `count` jobs on `threads` worker threads and hands the results to `consume` on
/// the calling thread strictly in job order. At most `window` jobs, and jobs whose
/// `cost` adds up to at most `budget`, are in flight (done but not yet consumed, or
/// running), which bounds memory. The budget matters when job sizes vary: a count-only
/// window either holds too many big jobs or, behind one slow big job, lets the other
/// workers run out of small jobs and idle. The next job to be consumed is always allowed,
/// whatever its cost. The first error stops everything and is rethrown after all
/// workers have exited.
final class OrderedPipeline<State, R>: @unchecked Sendable {
    private let cond = NSCondition()
    private var results: [Int: Result<R, any Error>] = [:]
    private var nextJob = 0
    private var consumed = 0
    private var stopped = false
    private var running = 0
    /// Cost of jobs handed out and not yet consumed.
    private var inFlight = 0

    static func run(
        count: Int, threads: Int, window: Int,
        budget: Int = .max, cost: @escaping @Sendable (Int) -> Int = { _ in 0 },
        makeState: @escaping @Sendable () throws -> State,
        work: @escaping @Sendable (inout State, Int) throws -> R,
        consume: (Int, R) throws -> Void
    ) throws {
        if count == 0 { return }
        let p = OrderedPipeline<State, R>()
        let n = max(1, min(threads, count))
        p.running = n
        for _ in 0..<n {
            let t = Thread { p.worker(count: count, window: window, budget: budget, cost: cost, makeState: makeState, work: work) }
            t.stackSize = 1 << 20
            t.start()
        }
        var failure: (any Error)?
        for i in 0..<count {
            p.cond.lock()
            while p.results[i] == nil { p.cond.wait() }
            let r = p.results.removeValue(forKey: i)
            p.consumed = i + 1
            p.inFlight -= cost(i)
            p.cond.broadcast()
            p.cond.unlock()
            do {
                switch r {
                case .success(let v): try consume(i, v)
                case .failure(let e): throw e
                case nil: break
                }
            } catch {
                failure = error
                break
            }
        }
        p.cond.lock()
        if failure != nil { p.stopped = true; p.cond.broadcast() }
        while p.running > 0 { p.cond.wait() }
        p.cond.unlock()
        if let failure { throw failure }
    }

    private func worker(
        count: Int, window: Int, budget: Int, cost: (Int) -> Int,
        makeState: () throws -> State, work: (inout State, Int) throws -> R
    ) {
        defer {
            cond.lock(); running -= 1; cond.broadcast(); cond.unlock()
        }
        var state: State
        do { state = try makeState() } catch {
            // Report the error as the result of the next job so the consumer sees it.
            cond.lock()
            let i = nextJob
            if i < count { nextJob += 1; results[i] = .failure(error) }
            // Any later job index still needs a result: stop handing out work.
            stopped = true
            for j in nextJob..<count { results[j] = .failure(error) }
            nextJob = count
            cond.broadcast()
            cond.unlock()
            return
        }
        while true {
            cond.lock()
            while !stopped && nextJob < count && nextJob > consumed
                && (nextJob - consumed >= window || inFlight + cost(nextJob) > budget) { cond.wait() }
            if stopped || nextJob >= count { cond.unlock(); return }
            let i = nextJob
            nextJob += 1
            inFlight += cost(i)
            cond.unlock()
            let r: Result<R, any Error>
            do { r = .success(try work(&state, i)) } catch { r = .failure(error) }
            cond.lock()
            results[i] = r
            cond.broadcast()
            cond.unlock()
        }
    }
}
