// Reference for keel-go's differential test: Go's own time, strconv, path
// and fmt, and Debian's docker/go-units, one request per line on stdin
// ("op<TAB>hex(arg)[<TAB>hex(arg2)]"), one answer per line on stdout
// ("ok<TAB>hex(out)" or "err<TAB>hex(error text)"). Hex keeps invalid UTF-8
// and control characters intact in both directions.
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
)

func f64(s string) float64 {
	b, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		panic(err)
	}
	return math.Float64frombits(b)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func answer(op, a, b string) (string, error) {
	switch op {
	case "dur":
		d, err := time.ParseDuration(a)
		return strconv.FormatInt(int64(d), 10), err
	case "durstr":
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			panic(err)
		}
		return time.Duration(n).String(), nil
	case "ram":
		n, err := units.RAMInBytes(a)
		return strconv.FormatInt(n, 10), err
	case "fhs":
		n, err := units.FromHumanSize(a)
		return strconv.FormatInt(n, 10), err
	case "hsp":
		return units.HumanSizeWithPrecision(f64(a), atoi(b)), nil
	case "hdur":
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			panic(err)
		}
		return units.HumanDuration(time.Duration(n)), nil
	case "bytes":
		return units.BytesSize(f64(a)), nil
	case "clean":
		return path.Clean(a), nil
	case "quote":
		return strconv.Quote(a), nil
	case "qascii":
		return strconv.QuoteToASCII(a), nil
	case "qrune":
		return strconv.QuoteRune(rune(atoi(a))), nil
	case "pfloat":
		f, err := strconv.ParseFloat(a, 64)
		return fmt.Sprintf("%016x", math.Float64bits(f)), err
	case "fmtg":
		return fmt.Sprintf("%.*g", atoi(b), f64(a)), nil
	case "isprint":
		var out []string
		start := -1
		for r := 0; r <= 0x110000; r++ {
			p := r <= 0x10FFFF && strconv.IsPrint(rune(r))
			if p && start < 0 {
				start = r
			}
			if !p && start >= 0 {
				out = append(out, fmt.Sprintf("%x-%x", start, r-1))
				start = -1
			}
		}
		return strings.Join(out, ","), nil
	}
	panic("unknown op " + op)
}

func unhex(s string) string {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		f := strings.Split(in.Text(), "\t")
		var a, b string
		if len(f) > 1 {
			a = unhex(f[1])
		}
		if len(f) > 2 {
			b = unhex(f[2])
		}
		res, err := answer(f[0], a, b)
		if err != nil {
			fmt.Fprintf(out, "err\t%x\n", err.Error())
		} else {
			fmt.Fprintf(out, "ok\t%x\n", res)
		}
	}
}
