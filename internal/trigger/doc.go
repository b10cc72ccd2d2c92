// Package trigger owns the rules of schedules and triggers (our extension
// "triggers", api/trigger.go): when a schedule fires, what a result or run
// trigger fires on, and whether a set of triggers would fire each other
// forever. It knows no HTTP, no store and no clock: the server checks a
// put through it, stores the next tick it computes, and asks it again when
// that tick has come.
//
// The lifecycle of a schedule:
//
//  1. ParseSchedule checks cron, tz and every, each error naming its
//     field. Cron is five fields or a descriptor (@hourly, @daily, …) read
//     in tz (default UTC); every is a Kolejka time of at least 1s.
//  2. First gives the first tick strictly after the schedule was created;
//     the server stores it as the next tick.
//  3. Due, called with the stored next tick and the time now, says whether
//     it has come. Ticks missed while the server was down coalesce into one
//     firing, the latest tick not after now, and Due gives the tick after
//     now to store next. An every-schedule's ticks are the first tick plus
//     whole multiples of every, so they do not drift with late firings.
//
// A trigger's put goes through CheckName, ParseOverlap (a schedule's) and
// CheckOn (a result or run trigger's, which Matches then applies to each
// task or run that ends). FindLoop refuses a set of triggers in which a
// firing's work would fire a trigger again, round and round: a result
// trigger whose target is a task in the queue it watches is the shortest.
package trigger
