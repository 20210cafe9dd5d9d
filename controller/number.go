package controller

import (
	"net/http"
	"strconv"

	"callbridge"
	"callbridge/controller/internal/handler"

	"github.com/gin-gonic/gin"
)

// numberIn is one number of POST /v1/numbers.
type numberIn struct {
	Number  string   `json:"number"`
	Gateway string   `json:"gateway"`
	Area    string   `json:"area"`
	Labels  []string `json:"labels"`
	Enabled *bool    `json:"enabled"`
}

// createNumbers adds one number ({"number": ...}) or many
// ({"numbers": [...]}) to the account's pool, all or none.
func createNumbers(numbers callbridge.NumberService, rules callbridge.NumberRules) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := readBody(c)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		var ins []numberIn
		if _, many := jsonKeys(body)["numbers"]; many {
			var batch struct {
				Numbers []numberIn `json:"numbers"`
			}
			err = handler.DecodeJSONBytes(body, &batch)
			ins = batch.Numbers
		} else {
			var one numberIn
			err = handler.DecodeJSONBytes(body, &one)
			ins = []numberIn{one}
		}
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		ns := make([]*callbridge.VirtualNumber, len(ins))
		for i, in := range ins {
			n, err := rules.Parse(in.Number)
			if err != nil {
				handler.WriteError(c, callbridge.FieldError("number", "%s", callbridge.ErrorMessage(err)))
				return
			}
			ns[i] = &callbridge.VirtualNumber{Number: n, Gateway: in.Gateway, Area: in.Area, Labels: in.Labels, Enabled: in.Enabled == nil || *in.Enabled}
		}
		out, err := numbers.CreateNumbers(c.Request.Context(), handler.Account(c).ID, ns)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"numbers": out})
	}
}

// pathNumber parses the :number path parameter.
func pathNumber(c *gin.Context, rules callbridge.NumberRules) (callbridge.Number, error) {
	n, err := rules.Parse(c.Param("number"))
	if err != nil {
		return "", callbridge.Errorf(callbridge.ENOTFOUND, "number not found")
	}
	return n, nil
}

func getNumber(numbers callbridge.NumberService, rules callbridge.NumberRules) gin.HandlerFunc {
	return func(c *gin.Context) {
		n, err := pathNumber(c, rules)
		if err == nil {
			var v *callbridge.VirtualNumber
			if v, err = numbers.Number(c.Request.Context(), handler.Account(c).ID, n); err == nil {
				c.JSON(http.StatusOK, v)
				return
			}
		}
		handler.WriteError(c, err)
	}
}

func listNumbers(numbers callbridge.NumberService) gin.HandlerFunc {
	return func(c *gin.Context) {
		f := callbridge.NumberFilter{Area: c.Query("area"), Cursor: c.Query("cursor")}
		if s := c.Query("enabled"); s != "" {
			b, err := strconv.ParseBool(s)
			if err != nil {
				handler.WriteError(c, callbridge.FieldError("enabled", "must be true or false"))
				return
			}
			f.Enabled = &b
		}
		var err error
		if f.Limit, err = handler.QueryLimit(c, 500); err != nil {
			handler.WriteError(c, err)
			return
		}
		ns, next, err := numbers.Numbers(c.Request.Context(), handler.Account(c).ID, f)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if ns == nil {
			ns = []*callbridge.VirtualNumber{}
		}
		c.JSON(http.StatusOK, gin.H{"numbers": ns, "next_cursor": next})
	}
}

// numberPatch is the body of PATCH /v1/numbers/{number}.
type numberPatch struct {
	Gateway *string   `json:"gateway"`
	Area    *string   `json:"area"`
	Labels  *[]string `json:"labels"`
	Enabled *bool     `json:"enabled"`
}

func updateNumber(numbers callbridge.NumberService, rules callbridge.NumberRules) gin.HandlerFunc {
	return func(c *gin.Context) {
		n, err := pathNumber(c, rules)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		var in numberPatch
		if err := handler.DecodeJSON(c, &in); err != nil {
			handler.WriteError(c, err)
			return
		}
		v, err := numbers.UpdateNumber(c.Request.Context(), handler.Account(c).ID, n, callbridge.NumberUpdate(in))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, v)
	}
}

func deleteNumber(numbers callbridge.NumberService, rules callbridge.NumberRules) gin.HandlerFunc {
	return func(c *gin.Context) {
		n, err := pathNumber(c, rules)
		if err == nil {
			err = numbers.DeleteNumber(c.Request.Context(), handler.Account(c).ID, n)
		}
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}
