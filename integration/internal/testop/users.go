package testop

import (
	"slices"
	"sync"

	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/example/server/storage"
)

// Custom scopes this provider knows besides OpenID Connect's own (openid,
// profile, email, phone, address, offline_access). A client may request
// them; the provider grants each one only to users who hold it (see User.Scopes),
// silently dropping the rest, as OpenID Providers do.
const (
	ScopeRecipesRead  = "recipes:read"
	ScopeRecipesWrite = "recipes:write"
	ScopeAdmin        = "admin"
)

// The test users. Admin is the zitadel example's own test user (its
// username as the example builds it for a localhost issuer); Reader is ours.
const (
	AdminSubject  = "id1"
	AdminUsername = "test-user@localhost"
	AdminPassword = "verysecure"
	AdminEmail    = "test-user@zitadel.ch"
	AdminName     = "Test User"

	ReaderSubject  = "id2"
	ReaderUsername = "reader@localhost"
	ReaderPassword = "reader-secret"
	ReaderEmail    = "reader@example.com"
	ReaderName     = "Rita Reader"
)

// User describes one account of the test provider and the claims it yields.
//
// Claims by requested scope (the ID token carries only sub, plus the
// protocol claims, unless Config.IDTokenUserinfoClaims is set; the
// UserInfo endpoint carries them all):
//   - openid: sub
//   - profile: name, given_name, family_name, preferred_username (= Username),
//     locale, groups (a JSON array)
//   - email: email, email_verified (true)
//
// The token response's scope, and the scope claim of JWT access tokens,
// hold the requested scopes less the custom scopes the user lacks.
type User struct {
	Subject    string
	Username   string
	Password   string
	Email      string
	Name       string
	GivenName  string
	FamilyName string
	Locale     string
	Groups     []string
	// Scopes are the custom scopes the provider grants this user when
	// the client asks for them.
	Scopes []string
}

// Admin returns the admin test user: every custom scope.
func Admin() User {
	return User{
		Subject:    AdminSubject,
		Username:   AdminUsername,
		Password:   AdminPassword,
		Email:      AdminEmail,
		Name:       AdminName,
		GivenName:  "Test",
		FamilyName: "User",
		Locale:     "de",
		Groups:     []string{"admins", "cooks"},
		Scopes:     []string{ScopeRecipesRead, ScopeRecipesWrite, ScopeAdmin},
	}
}

// Reader returns the read-only test user: recipes:read only.
func Reader() User {
	return User{
		Subject:    ReaderSubject,
		Username:   ReaderUsername,
		Password:   ReaderPassword,
		Email:      ReaderEmail,
		Name:       ReaderName,
		GivenName:  "Rita",
		FamilyName: "Reader",
		Locale:     "en",
		Groups:     []string{"readers"},
		Scopes:     []string{ScopeRecipesRead},
	}
}

// Users returns every test user.
func Users() []User { return []User{Admin(), Reader()} }

// userStore implements storage.UserStore over fixed users.
type userStore struct {
	byID map[string]*storage.User
	mu   sync.RWMutex
	meta map[string]User // by subject; Groups may change (setGroups)
}

func newUserStore(users []User) *userStore {
	s := &userStore{byID: map[string]*storage.User{}, meta: map[string]User{}}
	for _, u := range users {
		s.byID[u.Subject] = &storage.User{
			ID:                u.Subject,
			Username:          u.Username,
			Password:          u.Password,
			FirstName:         u.GivenName,
			LastName:          u.FamilyName,
			Email:             u.Email,
			EmailVerified:     true,
			PreferredLanguage: language.Make(u.Locale),
			// IsAdmin only matters to the example's impersonation rule,
			// which our token exchange replaces.
			IsAdmin: slices.Contains(u.Scopes, ScopeAdmin),
		}
		u.Groups = slices.Clone(u.Groups)
		u.Scopes = slices.Clone(u.Scopes)
		s.meta[u.Subject] = u
	}
	return s
}

func (s *userStore) GetUserByID(id string) *storage.User { return s.byID[id] }

func (s *userStore) GetUserByUsername(username string) *storage.User {
	for _, u := range s.byID {
		if u.Username == username {
			return u
		}
	}
	return nil
}

func (s *userStore) ExampleClientID() string { return storage.ServiceUserID }

// lookup finds a user by subject or username.
func (s *userStore) lookup(subjectOrUsername string) (User, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u, ok := s.meta[subjectOrUsername]; ok {
		return u, true
	}
	for _, u := range s.meta {
		if u.Username == subjectOrUsername {
			return u, true
		}
	}
	return User{}, false
}

// setGroups replaces the user's groups claim (by subject or username).
func (s *userStore) setGroups(subjectOrUsername string, groups []string) bool {
	u, ok := s.lookup(subjectOrUsername)
	if !ok {
		return false
	}
	s.mu.Lock()
	u.Groups = slices.Clone(groups)
	s.meta[u.Subject] = u
	s.mu.Unlock()
	return true
}
