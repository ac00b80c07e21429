package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// revRangeScript reads a stream newest first, like XREVRANGE key hi lo, but
// stops at a byte budget, which COUNT alone cannot: it returns at most count
// entries, and no more entries (the first aside) than fit in budget bytes
// of field names and values. An entry larger than maxSize comes without its
// fields: it is never delivered, and its ID keeps the reading continuous.
// The reply is {done, entries}: done is 1 when the range has no more
// entries. Redis holds at most one chunk of 100 entries beyond the reply
// while the script runs.
var revRangeScript = redis.NewScript(`
local key, hi, lo = KEYS[1], ARGV[1], ARGV[2]
local count, budget, maxSize = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out, bytes = {}, 0
while #out < count do
  local want = math.min(100, count - #out)
  local page = redis.call('XREVRANGE', key, hi, lo, 'COUNT', want)
  for _, e in ipairs(page) do
    local size = 0
    for _, v in ipairs(e[2]) do size = size + #v end
    if size > maxSize then
      e = {e[1], {}}
      size = 0
    end
    if #out > 0 and bytes + size > budget then
      return {0, out}
    end
    out[#out + 1] = e
    bytes = bytes + size
  end
  if #page < want then
    return {1, out}
  end
  hi = '(' .. page[#page][1]
end
return {0, out}
`)

// revRange reads the entries from hi down to lo (XREVRANGE bounds, "(" for
// an exclusive one), newest first: up to count of them and about budget
// bytes, in one round trip (revRangeScript). done reports that the range
// has no more entries. Where Redis refuses scripts, it reads a page of
// r.page entries with XREVRANGE instead (sized for entries within
// max_message_size), which costs more round trips for the same bytes.
func (r *streamReader) revRange(ctx context.Context, hi, lo string, count, budget int) (msgs []redis.XMessage, done bool, err error) {
	if !r.noScript.Load() {
		res, err := revRangeScript.Run(ctx, r.hub.client, []string{r.key}, hi, lo, count, budget, r.maxSize).Slice()
		if err == nil {
			return parseRange(res)
		}
		var rerr redis.Error
		if !errors.As(err, &rerr) || isNoSuchKey(err) {
			return nil, false, fmt.Errorf("reading stream history: %w", err)
		}
		// A Redis that refuses EVAL (a proxy, an ACL): read pages.
		if r.noScript.CompareAndSwap(false, true) {
			r.hub.logger.Warn("redis refuses scripts: stream history is read in smaller pages", zap.Error(err))
		}
	}
	msgs, err = r.hub.client.XRevRangeN(ctx, r.key, hi, lo, min(r.page, int64(count))).Result()
	if err != nil {
		return nil, false, fmt.Errorf("reading stream history: %w", err)
	}
	return msgs, int64(len(msgs)) < min(r.page, int64(count)), nil
}

// errRangeReply reports a reply of revRangeScript that is not its shape.
var errRangeReply = errors.New("reading stream history: unexpected reply to the range script")

// parseRange reads revRangeScript's reply.
func parseRange(res []any) ([]redis.XMessage, bool, error) {
	if len(res) != 2 {
		return nil, false, errRangeReply
	}
	done, _ := res[0].(int64)
	entries, ok := res[1].([]any)
	if !ok {
		return nil, false, errRangeReply
	}
	msgs := make([]redis.XMessage, 0, len(entries))
	for _, e := range entries {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, false, errRangeReply
		}
		id, ok1 := pair[0].(string)
		fields, ok2 := pair[1].([]any)
		if !ok1 || !ok2 || len(fields)%2 != 0 {
			return nil, false, errRangeReply
		}
		values := make(map[string]any, len(fields)/2)
		for i := 0; i < len(fields); i += 2 {
			k, _ := fields[i].(string)
			values[k] = fields[i+1]
		}
		msgs = append(msgs, redis.XMessage{ID: id, Values: values})
	}
	return msgs, done == 1, nil
}
