package controller

import (
	"net/http"

	"callbridge"
	"callbridge/controller/internal/handler"

	"github.com/gin-gonic/gin"
)

// accountRequest is the body of POST /v1/admin/accounts.
type accountRequest struct {
	Name          string `json:"name"`
	ServiceNumber string `json:"service_number"`
	HideCallerID  bool   `json:"hide_caller_id"`
	Prepaid       bool   `json:"prepaid"`
	Currency      string `json:"currency"`
}

// createAccount creates an account and answers with its first API key,
// which is never shown again.
func createAccount(accounts callbridge.AccountService) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req accountRequest
		if err := handler.DecodeJSON(c, &req); err != nil {
			handler.WriteError(c, err)
			return
		}
		a := &callbridge.Account{Name: req.Name, HideCallerID: req.HideCallerID, Prepaid: req.Prepaid, Currency: req.Currency}
		if req.ServiceNumber != "" {
			n, err := callbridge.ParseNumber(req.ServiceNumber)
			if err != nil {
				handler.WriteError(c, callbridge.FieldError("service_number", "%s", callbridge.ErrorMessage(err)))
				return
			}
			a.ServiceNumber = n
		}
		key, err := accounts.CreateAccount(c.Request.Context(), a)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.Header("Location", "/v1/admin/accounts/"+a.ID)
		c.JSON(http.StatusCreated, gin.H{"account": a, "api_key": key})
	}
}

func getAccount(accounts callbridge.AccountService) gin.HandlerFunc {
	return func(c *gin.Context) {
		a, err := accounts.Account(c.Request.Context(), c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, a)
	}
}

func createAPIKey(accounts callbridge.AccountService) gin.HandlerFunc {
	return func(c *gin.Context) {
		key, err := accounts.CreateAPIKey(c.Request.Context(), c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"api_key": key})
	}
}

func revokeAPIKey(accounts callbridge.AccountService) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := accounts.RevokeAPIKey(c.Request.Context(), c.Param("id"), c.Param("key")); err != nil {
			handler.WriteError(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// getOwnAccount answers with the authenticated account.
func getOwnAccount() gin.HandlerFunc {
	return func(c *gin.Context) {
		c.JSON(http.StatusOK, handler.Account(c))
	}
}
